"""The frozen text-embedding item table behind a trainable adapter, shared by the Text* models."""
import weakref

import torch
from torch import nn
from torch.nn import functional as F

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.feat import dataset_feat_path, load_aligned
from recbole_llm2rec.model import rat
from recbole_llm2rec.props import setting


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


class MoEAdapter(nn.Module):
    """Mixture of parametric-whitening experts, after UniSRec (Hou et al., KDD'22):
    sum_k g_k(z) W_k (z - b_k), with a learned centre b_k and projection W_k per expert and a
    softmax gate g(z) over `adapter_n_experts` experts; `adapter_dropout` on the input in
    training. Maps [..., in_dim] to [..., out_dim]."""

    def __init__(self, in_dim, out_dim, config):
        super().__init__()
        self.n_experts = setting(config, "adapter_n_experts")
        self.out_dim = out_dim
        self.dropout = nn.Dropout(setting(config, "adapter_dropout"))
        self.centers = nn.Parameter(torch.zeros(self.n_experts, in_dim))  # [K, in]
        self.proj = nn.Parameter(torch.empty(in_dim, self.n_experts * out_dim))  # [in, K*out]
        for k in range(self.n_experts):  # each expert starts like the linear adapter
            nn.init.xavier_normal_(self.proj.data[:, k * out_dim:(k + 1) * out_dim])
        self.gate = nn.Linear(in_dim, self.n_experts, bias=False)
        nn.init.zeros_(self.gate.weight)  # uniform mixture at the start

    def forward(self, z):
        z = self.dropout(z)
        gates = torch.softmax(self.gate(z), dim=-1).unsqueeze(-1)  # [..., K, 1]
        proj = self.proj.view(-1, self.n_experts, self.out_dim)  # [in, K, out]
        # W_k (z - b_k) = W_k z - W_k b_k: one matmul for all experts, no centred copies of z
        experts = (z @ self.proj).unflatten(-1, (self.n_experts, self.out_dim))  # [..., K, out]
        shifts = torch.einsum("ki,iko->ko", self.centers, proj)  # [K, out]
        return ((experts - shifts) * gates).sum(dim=-2)


ADAPTERS = {"linear": LinearAdapter, "mlp": MLPAdapter, "moe": MoEAdapter,
            "rat": rat.RATAdapter}


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

    def __init__(self, text_emb, out_dim, config, dataset=None):
        super().__init__()
        adapter_type = setting(config, "adapter_type")
        if adapter_type not in ADAPTERS:
            raise ValueError(f"adapter_type {adapter_type!r} is not one of {sorted(ADAPTERS)}")
        # a buffer, not a parameter: saved with the model, never trained
        self.register_buffer("text_emb", torch.as_tensor(text_emb, dtype=torch.float32))
        self.adapter = ADAPTERS[adapter_type](self.text_emb.shape[1], out_dim, config)
        self.embedding_dim = out_dim
        self.adapter_learning_rate = config["adapter_learning_rate"]
        self._cache = _TableCache()
        self.alignment = None  # LLMEmb's collaborative alignment (adapter_type rat)
        if adapter_type == "rat" and config["rat_alpha"]:
            self.alignment = rat.CollaborativeAlignment(config, self.text_emb.shape[0], out_dim)

    def _state_key(self):
        tensors = [*self.parameters(), *self.buffers()]
        return (torch.is_grad_enabled(), self.training,
                tuple((t.data_ptr(), t._version) for t in tensors))

    def compute(self):
        """The adapted table, computed now (no cache). Returns [n_items, out_dim]."""
        return self.adapter(self.text_emb)

    def new_item_rows(self, text_emb):
        """Rows of items without training interactions (new items, e.g. added to a served
        model) from their frozen text rows [m, D], through the trained adapter: the rows such
        items have in `weight`. Returns [m, out_dim]."""
        return self.adapter(text_emb)

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

    def auxiliary_loss(self, interaction):
        """The table's own term of the training loss for `interaction` (the RAT alignment), or
        None."""
        return None if self.alignment is None else self.alignment(self.weight, interaction)

    def train(self, mode=True):
        self._cache = _TableCache()
        return super().train(mode)

    def param_groups(self, model):
        """Optimizer parameter groups of `model` with this table's own settings, or None
        when it has none (the trainer then uses `model.parameters()`, as RecBole does)."""
        special = self._group_settings()
        if not special:
            return None
        own = {id(p) for params, _ in special for p in params}
        groups = [{"params": [p for p in model.parameters() if id(p) not in own]}]
        groups += [{"params": params, **settings} for params, settings in special]
        return [g for g in groups if g["params"]]

    def _group_settings(self):
        """[(parameters, optimizer settings)] that differ from the model-wide ones."""
        if self.adapter_learning_rate is None:
            return []
        return [(list(self.adapter.parameters()), {"lr": self.adapter_learning_rate})]


class TextIDItemTable(TextItemTable):
    """`item_repr: text+id`: the adapted text table plus an ID part per item.

    An item with a training interaction (`trained_items`) has a trainable ID row. An item
    without one (a new item) has no ID row: its ID part is the stand-in `id_missing` names,
    `zero` (text alone) or `learned` (one trained vector shared by every item without an ID).
    Its untrained ID row is zero at initialisation and multiplied by a zero mask in every
    forward, so it gets no gradient and stays exactly zero under (decoupled) weight decay.
    In training, `id_dropout` replaces a trained item's whole ID part by the stand-in with that
    probability (per item, per forward), so its text must stand alone. The kept ID rows are
    scaled by 1 / (1 - id_dropout) (inverted dropout, `id_dropout_rescale`, the default), so at
    test, where every warm item keeps its ID row, that row is its expected training value; a
    new item's row is text alone plus the stand-in. Unscaled (`id_dropout_rescale: False`),
    warm items keep twice their average training ID weight at test (p = 0.5) and outrank new
    items (docs/experiments.md). `new_item_rows` is the row of a new item.
    """

    def __init__(self, text_emb, out_dim, config, dataset):
        super().__init__(text_emb, out_dim, config)
        n_items = self.text_emb.shape[0]
        seen = torch.zeros(n_items, dtype=torch.bool)
        seen[trained_items(config, dataset)] = True
        seen[0] = False  # padding
        self.register_buffer("id_mask", seen.float().unsqueeze(1))  # [n_items, 1]
        self.id_embedding = nn.Embedding(n_items, out_dim)
        nn.init.normal_(self.id_embedding.weight, std=setting(config, "id_init_std"))
        with torch.no_grad():
            self.id_embedding.weight.mul_(self.id_mask)
        self.id_dropout = setting(config, "id_dropout")
        self.id_dropout_rescale = bool(setting(config, "id_dropout_rescale"))
        self.id_weight_decay = config["id_weight_decay"]
        missing = setting(config, "id_missing")
        if missing not in ID_MISSING:
            raise InputError(f"must be one of {', '.join(ID_MISSING)}", field="id_missing",
                             value=missing)
        # the ID part of an item without one: a trained vector (zeros at the start), or zeros
        # (a buffer outside the state_dict, so checkpoints from before id_missing still load)
        if missing == "learned":
            self.missing_id = nn.Parameter(torch.zeros(out_dim))
        else:
            self.register_buffer("missing_id", torch.zeros(out_dim), persistent=False)

    def id_rows(self):
        """ID part of every item: its ID row where it has one, else the stand-in; in training,
        each trained item's ID row is replaced by the stand-in with probability `id_dropout`
        and the kept rows are scaled by 1 / (1 - id_dropout) unless `id_dropout_rescale` is
        off. Returns [n, out_dim]."""
        mask = self.id_mask
        if self.training and self.id_dropout > 0:
            keep = mask * (torch.rand_like(mask) >= self.id_dropout)
            scale = 1 / (1 - self.id_dropout) if self.id_dropout_rescale else 1.0
            return self.id_embedding.weight * keep * scale + self.missing_id * (1 - keep)
        return self.id_embedding.weight * mask + self.missing_id * (1 - mask)

    def compute(self):
        return super().compute() + self.id_rows()

    def new_item_rows(self, text_emb):
        """Rows of items without training interactions from their frozen text rows [m, D]:
        adapter(text) + the missing-ID stand-in, the rows such items have in `weight`.
        Returns [m, out_dim]."""
        return super().new_item_rows(text_emb) + self.missing_id

    def _group_settings(self):
        groups = super()._group_settings()
        if self.id_weight_decay is not None:
            groups.append(([self.id_embedding.weight], {"weight_decay": self.id_weight_decay}))
        return groups


ID_MISSING = ("zero", "learned")  # the ID part of a new item (TextIDItemTable)

ITEM_TABLES = {"text": TextItemTable, "text+id": TextIDItemTable}


def trained_items(config, dataset):
    """Internal ids of the items with a training interaction: items that occur in a row of
    `dataset` (the training split the model is built from, `train_data.dataset`), as its
    target or in its history. Under leave-one-out these are the items of each user's
    interactions but the last two. Returns a LongTensor."""
    iid = config["ITEM_ID_FIELD"]
    inter = dataset.inter_feat
    fields = [f for f in (iid, iid + config["LIST_SUFFIX"]) if f in inter]
    return torch.unique(torch.cat([inter[f].reshape(-1).long() for f in fields]))


def load_text_embeddings(config, dataset):
    """The `.feat` table chosen by `text_emb`, aligned to the dataset's item ids; with
    `adapter_type: rat`, reduced by its cached PCA. Returns [n_items, D]."""
    path = dataset_feat_path(config["data_path"], config["dataset"], setting(config, "text_emb"))
    id_tokens = dataset.field2id_token[dataset.iid_field]
    table = load_aligned(path, list(id_tokens), expected_dim=config["text_emb_dim"],
                         on_missing=setting(config, "missing_item_emb"))
    if setting(config, "adapter_type") == "rat":
        rat.check_settings(config)
        table = rat.reduce_table(table, path, config)
    return table


class TextTableModel:
    """Mixin for a RecBole sequential model (`class TextSASRec(TextTableModel, SASRec)`): its
    item embedding becomes the text table `item_repr` names, the table's optimizer groups are
    the model's, and its own loss term (RAT's alignment) is added to the model's loss."""

    uses_text_emb = True  # reads <dataset>.<text_emb>.feat (run_recbole.py builds the default)

    def __init__(self, config, dataset, text_emb=None):
        super().__init__(config, dataset)
        use_text_item_table(self, config, dataset, text_emb)

    def optimizer_param_groups(self):
        """Parameter groups for the plugin's trainers (None: one group, as RecBole does)."""
        return self.item_embedding.param_groups(self)

    def calculate_loss(self, interaction):
        loss = super().calculate_loss(interaction)
        extra = self.item_embedding.auxiliary_loss(interaction)
        return loss if extra is None else loss + extra


def use_text_item_table(model, config, dataset, text_emb=None):
    """Replace `model.item_embedding` by the table `item_repr` names (frozen text through an
    adapter, with or without ID rows), of the same width. `text_emb` [n_items, D] is the frozen
    table when it is given (an exported bundle's weights), else it is read from the `.feat`."""
    item_repr = setting(config, "item_repr")
    if item_repr not in ITEM_TABLES:
        raise ValueError(f"item_repr {item_repr!r} is not one of {sorted(ITEM_TABLES)}")
    out_dim = model.item_embedding.embedding_dim
    if text_emb is None:
        text_emb = load_text_embeddings(config, dataset)
    model.item_embedding = ITEM_TABLES[item_repr](text_emb, out_dim, config, dataset)
