"""Item groups by training interaction count: popularity groups (LLMEmb: the 20% most popular
items vs the other 80%) and frequent/rare items (LLM-SRec's "warm/cold": top 35% vs bottom 35%).

Items 1..n_items-1 are ordered by training count, most first, ties by item id; a group of a
fraction f of the m items holds floor(f * m) of them. Training counts are the interactions of
the training split (each user's sequence without its validation and test items), the first item
included.
"""
import numpy as np

from recbole_llm2rec.evaluation.interactions import fraction_count, sequence_interactions

POPULAR_FRACTION = 0.2
FREQUENT_FRACTION = 0.35


def training_counts(train_dataset):
    """Interactions per item id in the training split. Returns [n_items] int64 (index 0 = PAD)."""
    _, items = sequence_interactions(train_dataset)
    return np.bincount(items, minlength=train_dataset.item_num).astype(np.int64)


def items_by_count(counts):
    """Item ids 1..len(counts)-1, most interactions first, ties by id. Returns [n_items - 1]."""
    ids = np.arange(1, len(counts))
    return ids[np.lexsort((ids, -np.asarray(counts)[1:]))]


def count_groups(counts, popular=POPULAR_FRACTION, frequent=FREQUENT_FRACTION):
    """The analyses' item groups as sorted id arrays: popular (top `popular`), unpopular (the
    rest), frequent (top `frequent`) and rare (bottom `frequent`)."""
    order = items_by_count(counts)
    n_pop, n_freq = fraction_count(popular, len(order)), fraction_count(frequent, len(order))
    return {"popular": np.sort(order[:n_pop]), "unpopular": np.sort(order[n_pop:]),
            "frequent": np.sort(order[:n_freq]),
            "rare": np.sort(order[len(order) - n_freq:])}
