"""The trained model, rebuilt from a bundle's settings and weights without its dataset.

The model's own class is built (so its forward pass and its adapter are the trained code, not
copies) from a stand-in for the RecBole dataset that holds only the item count; the weights
then replace everything it initialised. For serving, its item table is swapped for
`VectorTable`, a lookup of the served catalogue's vectors, which grows as items are added.
"""
import torch
from torch import nn
from torch.nn import functional as F

from recbole_llm2rec.errors import InputError

EXPORTABLE = ("SASRec", "GRU4Rec", "TextSASRec", "TextGRU4Rec")
TEXT_EMB = "item_embedding.text_emb"
TRAINING_ONLY = "item_embedding.alignment."  # RAT's alignment with its teacher: a loss term


def check_exportable(model_name):
    if model_name not in EXPORTABLE:
        raise InputError(f"not exportable yet (exportable: {', '.join(EXPORTABLE)})",
                         field="model", value=model_name)


class Settings(dict):
    """The run's settings as a RecBole model reads them: a missing key reads None."""

    def __missing__(self, key):
        return None


class _ItemCount:
    """Stands in for the RecBole dataset when a model is built: it knows the number of items,
    and has no interactions (a `text+id` model's ID mask is restored with the weights)."""

    def __init__(self, item_field, n_items):
        self.iid_field, self.n_items = item_field, n_items
        self.inter_feat = {item_field: torch.zeros(0, dtype=torch.long)}

    def num(self, field):
        return self.n_items


def serving_weights(state_dict):
    """The weights a served model needs: all but training-only terms."""
    return {k: v for k, v in state_dict.items() if not k.startswith(TRAINING_ONLY)}


def build_model(config, weights):
    """The model of class `config["model"]` with `weights` loaded, on CPU, in eval mode."""
    from recbole_llm2rec.quick_start import resolve_model

    check_exportable(config.get("model"))
    cls = resolve_model(config["model"])
    settings = Settings(config, device="cpu")
    kwargs = {}
    if TEXT_EMB in weights:
        settings["rat_alpha"] = 0  # no teacher: the alignment only shapes training
        kwargs["text_emb"] = weights[TEXT_EMB]
        n_items = weights[TEXT_EMB].shape[0]
    else:
        n_items = weights["item_embedding.weight"].shape[0]
    model = cls(settings, _ItemCount(config["ITEM_ID_FIELD"], n_items), **kwargs)
    model.load_state_dict(serving_weights(weights))
    return model.eval()


class VectorTable(nn.Module):
    """The served catalogue's item vectors as the model's input item table: rows are looked up
    in `weight`, a buffer of capacity rows that grows (by reallocation) as items are added.
    Rows once written never change, so a request that reads an older buffer gets the same
    vectors for the rows it knows."""

    def __init__(self, vectors):
        super().__init__()
        self.weight = vectors
        self.embedding_dim = vectors.shape[1]

    def forward(self, item_ids):
        return F.embedding(item_ids, self.weight)


def adapted_vectors(model):
    """The model's item vectors as it scores them in full_sort_predict. Returns [n_items, H]."""
    with torch.no_grad():
        return model.item_embedding.weight.detach().clone()


def new_item_vectors(text_table, text_rows):
    """Vectors of new items from their text rows [n, D], through the trained `text_table`'s own
    path for items without an ID part (`TextItemTable.new_item_rows`). Returns [n, H]."""
    with torch.no_grad():
        return text_table.new_item_rows(torch.as_tensor(text_rows, dtype=torch.float32))
