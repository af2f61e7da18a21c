"""LLMEmb's recommendation adaptation training (RAT), `adapter_type: rat` of the Text* models.

The frozen `.feat` table is reduced by PCA to an intermediate width (`rat_pca_size`, default
in props/overall.yaml, at most the embedding width), fitted once on the file's rows and cached beside it; a
two-layer adapter W1(W2 e + b2) + b1 without activation maps it to the model's width; and the
recommender's loss gets `rat_alpha` x a symmetric in-batch contrastive alignment between the
adapted rows of the batch's target items and the same items' rows in the item table of a
previously trained ID-based SASRec (`rat_teacher_checkpoint`), dot products / `rat_temperature`.
"""
import logging
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from recbole_llm2rec.atomic import file_sha256
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.feat import read_feat
from recbole_llm2rec.props import setting

PCA_SUFFIX = ".pca.npz"  # <Dataset>.<name>.feat.pca.npz beside the .feat


class RATAdapter(nn.Module):
    """W1(W2 e + b2) + b1, no activation between (LLMEmb's adapter): [..., in_dim] ->
    [..., in_dim // 2] -> [..., out_dim]."""

    def __init__(self, in_dim, out_dim, config):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, max(in_dim // 2, 1)),
                                 nn.Linear(max(in_dim // 2, 1), out_dim))
        for layer in self.net:
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, z):
        return self.net(z)


def fit_pca(rows, n_components):
    """PCA of `rows` [N, D] (scikit-learn, full SVD). Returns (mean [D], components [k, D],
    explained variance ratio [k], largest first)."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=n_components, svd_solver="full").fit(np.asarray(rows, np.float64))
    return pca.mean_, pca.components_, pca.explained_variance_ratio_


def cached_pca(feat, size):
    """(mean, components) of the PCA to `size` components (at most the number of rows) of
    `.feat` file `feat`'s rows: read from `<feat>.pca.npz` when it was fitted on this file
    content with this size, else fitted now and cached there (a cache that cannot be written
    only costs a refit next time)."""
    cache, digest = feat + PCA_SUFFIX, file_sha256(feat)
    logger = logging.getLogger()
    if os.path.isfile(cache):
        try:
            with np.load(cache) as saved:
                if str(saved["feat_sha256"]) == digest and int(saved["size"]) == size:
                    return saved["mean"], saved["components"]
            logger.info(f"{cache}: fitted on other .feat content or size; refitting")
        except (OSError, ValueError, KeyError) as err:
            logger.warning(f"{cache}: unreadable ({err}); refitting")
    _, rows = read_feat(feat)
    mean, components, ratio = fit_pca(rows, min(size, rows.shape[0]))
    tmp = f"{cache}.{os.getpid()}.tmp.npz"
    try:
        np.savez(tmp, feat_sha256=digest, size=size, mean=mean, components=components,
                 explained_variance_ratio=ratio)
        os.replace(tmp, cache)
    except OSError as err:
        logger.warning(f"{cache}: not cached ({err})")
        if os.path.exists(tmp):
            os.remove(tmp)
    return mean, components


def reduce_table(text_emb, feat, config):
    """The aligned table `text_emb` [n_items, D] (row 0 padding) projected on the top
    `rat_pca_size` principal axes (at most D) of `feat`'s rows; the padding row stays zero.
    Returns float32 [n_items, k]."""
    mean, components = cached_pca(feat, min(setting(config, "rat_pca_size"),
                                                 text_emb.shape[1]))
    out = ((np.asarray(text_emb, np.float64) - mean) @ components.T).astype(np.float32)
    out[0] = 0.0
    return out


def teacher_table(path, config, n_items, dim):
    """The item table [n_items, dim] of the ID-based SASRec checkpoint `path` written by our
    runner for this dataset. InputError naming the file and the mismatch otherwise."""
    from recbole_llm2rec.compat import read_checkpoint

    if not path:
        raise InputError("adapter_type rat aligns with a trained ID-based SASRec: set "
                         "rat_teacher_checkpoint to its checkpoint (or rat_alpha: 0)",
                         field="rat_teacher_checkpoint")
    checkpoint = read_checkpoint(path)
    recorded = checkpoint.get("config") or {}
    checks = [("model", recorded.get("model"), "SASRec"),
              ("dataset", recorded.get("dataset"), config["dataset"])]
    weight = (checkpoint.get("state_dict") or {}).get("item_embedding.weight")
    if weight is None:
        raise InputError("RAT teacher has no item_embedding.weight", path=path)
    checks += [("item count", weight.shape[0], n_items), ("hidden size", weight.shape[1], dim)]
    for what, found, expected in checks:
        if found != expected:
            raise InputError(f"RAT teacher mismatch: {what} is {found!r}, this run needs "
                             f"{expected!r}", path=path, field="rat_teacher_checkpoint")
    return weight.detach().float()


def alignment_loss(adapted, teacher, temperature):
    """Symmetric in-batch InfoNCE between rows of `adapted` [S, d] and `teacher` [S, d] (row i
    matches row i), dot-product similarity / `temperature`, the two directions averaged."""
    logits = adapted @ teacher.T / temperature
    labels = torch.arange(adapted.shape[0], device=adapted.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


class CollaborativeAlignment(nn.Module):
    """`rat_alpha` x `alignment_loss` of the batch's distinct target items against a frozen
    SASRec item table (a buffer: saved with the model, never trained)."""

    def __init__(self, config, n_items, dim):
        super().__init__()
        self.alpha = float(config["rat_alpha"])
        self.temperature = float(config["rat_temperature"])
        self.item_field = config["ITEM_ID_FIELD"]
        self.register_buffer("teacher", teacher_table(config["rat_teacher_checkpoint"], config,
                                                      n_items, dim))

    def forward(self, table, interaction):
        """The weighted alignment term for `interaction`'s target items; `table` [n, d] is the
        adapted item table."""
        items = torch.unique(interaction[self.item_field])
        items = items[items != 0]
        return self.alpha * alignment_loss(table[items], self.teacher[items], self.temperature)


def check_settings(config):
    """InputError for RAT settings that cannot work."""
    alpha, temperature, size = (config[k] for k in ("rat_alpha", "rat_temperature",
                                                    "rat_pca_size"))
    if alpha is None or alpha < 0:
        raise InputError("must be a number >= 0", field="rat_alpha", value=alpha)
    if temperature is None or temperature <= 0:
        raise InputError("must be a positive number", field="rat_temperature", value=temperature)
    if size is None or size < 1:
        raise InputError("must be a positive integer", field="rat_pca_size", value=size)
