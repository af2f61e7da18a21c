"""The frozen text-embedding item table behind a trainable adapter, shared by the Text* models."""
import os

import torch
from torch import nn
from torch.nn import functional as F

from recbole_llm2rec.feat import FeatError, feat_path, load_aligned


class LinearAdapter(nn.Module):
    """z' = Wz + b. Maps [..., in_dim] to [..., out_dim]."""

    def __init__(self, in_dim, out_dim, config):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        nn.init.xavier_normal_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, z):
        return self.linear(z)


class MLPAdapter(nn.Module):
    """Two layers with GELU: [..., in_dim] -> [..., adapter_hidden_size] -> [..., out_dim]."""

    def __init__(self, in_dim, out_dim, config):
        super().__init__()
        hidden = config["adapter_hidden_size"] or out_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim))
        for layer in (self.net[0], self.net[2]):
            nn.init.xavier_normal_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, z):
        return self.net(z)


ADAPTERS = {"linear": LinearAdapter, "mlp": MLPAdapter}


class TextItemTable(nn.Module):
    """Drop-in for the item `nn.Embedding`: a frozen [n_items, D] text table through an adapter.

    `weight` is the adapted table [n_items, out_dim], used both for input items and for
    scoring all items. It is computed once per parameter update and reused within a step
    and across evaluation batches.
    """

    def __init__(self, text_emb, out_dim, config):
        super().__init__()
        adapter_type = config["adapter_type"] or "linear"
        if adapter_type not in ADAPTERS:
            raise ValueError(f"adapter_type {adapter_type!r} is not one of {sorted(ADAPTERS)}")
        # a buffer, not a parameter: saved with the model, never trained
        self.register_buffer("text_emb", torch.as_tensor(text_emb, dtype=torch.float32))
        self.adapter = ADAPTERS[adapter_type](self.text_emb.shape[1], out_dim, config)
        self.embedding_dim = out_dim
        self._cached = (None, None)

    def _state_key(self):
        tensors = [self.text_emb, *self.adapter.parameters()]
        return (torch.is_grad_enabled(), self.training,
                tuple((t.data_ptr(), t._version) for t in tensors))

    @property
    def weight(self):
        """The adapted table. Returns [n_items, out_dim]."""
        key = self._state_key()
        if self._cached[0] != key:
            self._cached = (key, self.adapter(self.text_emb))
        return self._cached[1]

    def forward(self, item_ids):
        """Adapted rows of `item_ids` [...]. Returns [..., out_dim]."""
        return F.embedding(item_ids, self.weight)


def load_text_embeddings(config, dataset):
    """The `.feat` table chosen by `text_emb`, aligned to the dataset's item ids. Returns [n_items, D]."""
    name = config["text_emb"]
    if not name:
        raise FeatError("text_emb is not set: name the embedding file <dataset>.<text_emb>.feat "
                        "to use, e.g. --text_emb=minilm")
    path = feat_path(config["data_path"], config["dataset"], name)
    id_tokens = dataset.field2id_token[dataset.iid_field]
    return load_aligned(path, list(id_tokens), expected_dim=config["text_emb_dim"],
                        on_missing=config["missing_item_emb"] or "error")


def use_text_item_table(model, config, dataset):
    """Replace `model.item_embedding` by a frozen-text table adapted to the same width."""
    out_dim = model.item_embedding.embedding_dim
    model.item_embedding = TextItemTable(load_text_embeddings(config, dataset), out_dim, config)
