"""Items that do not exist yet: out of a model's training loss and validation ranking until
they are revealed, as a served model's `add_items` would add them later.

    hide_items(model, ids)   # before training: their logits are -inf in the loss and in ranking
    trainer.fit(...)         # they get no gradient, so their rows (and .feat rows) change nothing
    reveal_items(model)      # before testing: they are ranked like every other item

Works for any RecBole model trained with the full-softmax cross-entropy (`loss_type: CE`) whose
loss goes through `model.loss_fct(logits, targets)` and whose ranking goes through
`model.full_sort_predict` (SASRec, GRU4Rec, their Text* versions). Nothing is added to the
model's `state_dict`, so its checkpoints load into a model without hidden items.
"""
import torch
from torch import nn
from torch.nn import functional as F

from recbole_llm2rec.errors import InputError


class MaskedCrossEntropy(nn.Module):
    """Cross-entropy over all items but the hidden ones (`hidden`: bool [n_items])."""

    def __init__(self, hidden):
        super().__init__()
        self.register_buffer("hidden", hidden, persistent=False)

    def forward(self, logits, target):
        return F.cross_entropy(logits.masked_fill(self.hidden, float("-inf")), target)


def hide_items(model, item_ids):
    """Take `item_ids` (internal ids) out of `model`'s training loss and full ranking until
    `reveal_items(model)`. Returns the model."""
    if getattr(model, "loss_type", None) != "CE" or not isinstance(
            getattr(model, "loss_fct", None), (nn.CrossEntropyLoss, MaskedCrossEntropy)):
        raise InputError(f"items withheld until test need the full-softmax loss: "
                         f"{type(model).__name__} has loss_type "
                         f"{getattr(model, 'loss_type', None)!r}; set loss_type: CE or "
                         f"cold_start_protocol: legacy", field="loss_type")
    device = next(model.parameters()).device
    hidden = torch.zeros(model.n_items, dtype=torch.bool, device=device)
    hidden[torch.as_tensor(item_ids, dtype=torch.long, device=device)] = True
    model.loss_fct = MaskedCrossEntropy(hidden)
    predict = type(model).full_sort_predict.__get__(model)

    def full_sort_predict(interaction):
        scores = predict(interaction)
        return scores.view(-1, model.n_items).masked_fill(hidden, float("-inf")).view(
            scores.shape)

    model.full_sort_predict = full_sort_predict
    return model


def reveal_items(model):
    """Put every hidden item back into `model`'s loss and ranking. Returns the model."""
    if isinstance(getattr(model, "loss_fct", None), MaskedCrossEntropy):
        model.loss_fct = nn.CrossEntropyLoss()
    model.__dict__.pop("full_sort_predict", None)
    return model

