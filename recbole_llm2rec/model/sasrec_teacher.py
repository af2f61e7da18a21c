"""The one way to read a trained ID-based SASRec written by our runner, as a teacher: LLMEmb's
RAT aligns with its item table (`rat.py`), LLM-SRec distils its user representation and feeds
its item table to the LLM (`llmsrec.py`)."""
from recbole_llm2rec.compat import read_checkpoint
from recbole_llm2rec.errors import InputError

ITEM_TABLE = "item_embedding.weight"


def read_sasrec(path, config, field, n_items=None, dim=None, history=None):
    """(recorded config, state_dict) of the SASRec checkpoint `path` written by our runner for
    this run's dataset; with `n_items` / `dim` / `history` also its item-table rows, width and
    at least that history length (MAX_ITEM_LIST_LENGTH). `field` is the setting that named
    the file. InputError naming the file and the mismatch otherwise."""
    if not path:
        raise InputError(f"this run needs a trained SASRec teacher: set {field} to its "
                         f"checkpoint", field=field)
    checkpoint = read_checkpoint(path)
    recorded = checkpoint.get("config") or {}
    state = checkpoint.get("state_dict") or {}
    if ITEM_TABLE not in state:
        raise InputError(f"teacher has no {ITEM_TABLE}", path=path, field=field)
    rows, width = state[ITEM_TABLE].shape
    checks = [("model", recorded.get("model"), "SASRec"),
              ("dataset", recorded.get("dataset"), config["dataset"])]
    if n_items is not None:
        checks.append(("item count", rows, n_items))
    if dim is not None:
        checks.append(("hidden size", width, dim))
    for what, found, expected in checks:
        if found != expected:
            raise InputError(f"teacher mismatch: {what} is {found!r}, this run needs "
                             f"{expected!r}", path=path, field=field)
    length = recorded.get("MAX_ITEM_LIST_LENGTH") or 0
    if history is not None and length < history:
        raise InputError(f"teacher mismatch: history length (MAX_ITEM_LIST_LENGTH) is "
                         f"{length!r}, this run needs at least {history}", path=path, field=field)
    return recorded, state


def item_table(path, config, field, n_items, dim):
    """The teacher's item table [n_items, dim] (float32, row 0 = [PAD])."""
    _, state = read_sasrec(path, config, field, n_items=n_items, dim=dim)
    return state[ITEM_TABLE].detach().float()


def frozen_sasrec(path, config, field, dataset):
    """The teacher as a frozen RecBole SASRec (eval mode, no gradients) on this run's device,
    built from its recorded config for `dataset`; checked as `read_sasrec` (item count and
    this run's history length)."""
    from recbole.model.sequential_recommender.sasrec import SASRec

    recorded, state = read_sasrec(path, config, field, n_items=dataset.num(config["ITEM_ID_FIELD"]),
                                  history=config["MAX_ITEM_LIST_LENGTH"])
    teacher = SASRec({**recorded, "device": config["device"]}, dataset)
    try:
        teacher.load_state_dict(state)
    except RuntimeError as err:
        raise InputError(f"weights do not fit its recorded SASRec config: "
                         f"{str(err).splitlines()[0]}", path=path, field=field) from None
    teacher.to(config["device"]).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher
