"""The rows of an experiment's tables and pictures: one per (model, text_emb, variant), in the
config's order, and the mean ± sample std of a cell's runs."""
import statistics

from benchmarks.experiments.spec import NO_EMB, NO_VARIANT, uses_text


def row_key(r):
    return (r["model"], r["text_emb"], r["variant"])


def row_label(key):
    model, emb, variant = key
    return model + ("" if emb == NO_EMB else f" · {emb}") + \
        ("" if variant == NO_VARIANT else f" [{variant}]")


def family(model):
    """The sequential model a row belongs to (TextSASRec -> SASRec)."""
    return model[len("Text"):] if uses_text(model) else model


def ordered_rows(exp, records):
    """Row keys: the config's order (families, ID row first, embedders, variants), then others."""
    keys = list(dict.fromkeys((run.model, run.text_emb, run.variant) for run in exp.runs()))
    fam = list(dict.fromkeys(family(m) for m in exp.models))
    keys.sort(key=lambda k: fam.index(family(k[0])) if family(k[0]) in fam else len(fam))
    present = {row_key(r) for r in records}
    return [k for k in keys if k in present] + sorted(present - set(keys))


def mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)
