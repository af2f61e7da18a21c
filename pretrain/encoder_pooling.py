"""Pooling hidden states into one vector per text (`pool`), and the pooling a text encoder
declares for itself (`pretrain.extract --pooling auto`).

A sentence-transformers folder says it in `modules.json`: its `Pooling` module's
`config.json` names the pooling mode, and a `Normalize` module asks for unit-length rows.
Without `modules.json`, BERT-style encoders (model types with a masked-LM head: BERT,
RoBERTa, BGE, GTE, ...) pool their first ([CLS]) token, and every other model the mean of its
tokens.
"""
import json
import os

import torch

from recbole_llm2rec.errors import InputError

POOLING = ("mean", "last", "cls")

MODULES = "modules.json"
ST_POOLING = "sentence_transformers.models.Pooling"
ST_NORMALIZE = "sentence_transformers.models.Normalize"
# sentence-transformers' pooling-config flag -> our pooling name (modes we can compute).
ST_MODES = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean",
            "pooling_mode_lasttoken": "last"}


class PoolingError(InputError):
    """A model folder's declared pooling cannot be read or is not one we compute."""


def pool(hidden, mask, pooling):
    """Pool hidden [B, L, H] over real tokens (mask [B, L], either padding side). Returns [B, H]."""
    hidden, mask = hidden.float(), mask.to(hidden.device)
    if pooling == "mean":
        return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)
    if pooling in ("last", "cls"):  # cls: the first real token
        at = mask.argmax(1) if pooling == "cls" else mask.shape[1] - 1 - mask.flip(1).argmax(1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), at]
    raise PoolingError(f"must be one of {', '.join(POOLING)}", field="pooling", value=pooling)


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except OSError as err:
        raise PoolingError(f"cannot read: {err.strerror}", path) from None
    except ValueError as err:
        raise PoolingError(f"not valid JSON: {err}", path) from None


def sentence_transformers_pooling(folder):
    """(pooling, normalize, source) declared by `folder/modules.json`, or None without one."""
    modules_path = os.path.join(folder, MODULES)
    if not os.path.isfile(modules_path):
        return None
    modules = _read_json(modules_path)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise PoolingError("expected a list of modules", modules_path)
    kinds = [m.get("type") for m in modules]
    if ST_POOLING not in kinds:
        raise PoolingError("declares no Pooling module", modules_path, field="type",
                           value=kinds)
    pooling_dir = modules[kinds.index(ST_POOLING)].get("path", "")
    config_path = os.path.join(folder, pooling_dir, "config.json")
    config = _read_json(config_path)
    on = sorted(k for k, v in config.items() if k.startswith("pooling_mode_") and v is True)
    if len(on) != 1 or on[0] not in ST_MODES:
        raise PoolingError(f"need exactly one of {', '.join(ST_MODES)} set (the others are "
                           f"not computed here)", config_path, field="pooling_mode",
                           value=on)
    normalize = ST_NORMALIZE in kinds
    source = f"{MODULES}: {pooling_dir}/config.json {on[0]}" + (", Normalize" if normalize
                                                                   else "")
    return ST_MODES[on[0]], normalize, source


def declared_pooling(folder, model_type):
    """(pooling, normalize, source) that the model in `folder` (config `model_type`) declares:
    its sentence-transformers modules when present, else `cls` for a BERT-style encoder and
    `mean` otherwise, without normalisation."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    declared = sentence_transformers_pooling(folder) if os.path.isdir(folder) else None
    if declared is not None:
        return declared
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return "cls", False, f"no {MODULES}: BERT-style encoder ({model_type})"
    return "mean", False, f"no {MODULES}: not a BERT-style encoder ({model_type})"
