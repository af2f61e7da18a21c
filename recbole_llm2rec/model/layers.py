"""The frozen text-embedding item table behind a trainable adapter, shared by the Text* models."""
import weakref

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


class _TableCache:
    """One adapted table and the state it was computed in (see `TextItemTable.weight`)."""

    __slots__ = ("key", "table", "__weakref__")

    def __init__(self, key=None, table=None):
        self.key, self.table = key, table

    def clear(self):
        self.key = self.table = None

    def __deepcopy__(self, memo):  # a copied model recomputes its own table
        return _TableCache()


class TextItemTable(nn.Module):
    """Drop-in for the item `nn.Embedding`: a frozen [n_items, D] text table through an adapter.

    `weight` is the adapted table [n_items, out_dim], used both for input items and for
    scoring all items, computed once per forward pass: a training forward builds it once and
    reuses it (input rows, then scores) until a backward pass runs through it, since backward
    frees its graph; the next forward builds a new one, whether or not the optimizer then
    changed anything (a skipped GradScaler step, a zero learning rate). Without gradients
    (evaluation) it is reused across batches until a parameter or buffer changes (in place or
    replaced) or the model switches between train() and eval().
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
        self._cache = _TableCache()

    def _state_key(self):
        tensors = [*self.parameters(), *self.buffers()]
        return (torch.is_grad_enabled(), self.training,
                tuple((t.data_ptr(), t._version) for t in tensors))

    def compute(self):
        """The adapted table, computed now (no cache). Returns [n_items, out_dim]."""
        return self.adapter(self.text_emb)

    @property
    def weight(self):
        """The adapted table, computed once per forward pass. Returns [n_items, out_dim]."""
        key = self._state_key()
        if self._cache.key != key:
            cache = _TableCache(key, self.compute())
            if cache.table.requires_grad:
                # backward frees the graph behind this table: the next forward needs a new one
                alive = weakref.ref(cache)
                cache.table.register_hook(lambda grad: alive() and alive().clear())
            self._cache = cache
        return self._cache.table

    def forward(self, item_ids):
        """Adapted rows of `item_ids` [...]. Returns [..., out_dim]."""
        return F.embedding(item_ids, self.weight)

    def train(self, mode=True):
        self._cache = _TableCache()
        return super().train(mode)


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
