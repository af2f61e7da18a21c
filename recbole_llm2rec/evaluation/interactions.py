"""The (user, item) interactions behind a RecBole sequential dataset (split or whole).

RecBole's sequential datasets hold one row per predicted interaction (`item_id` is the target,
`item_id_list` its history), so a user's first interaction is a target nowhere: it only appears
as the history of the row whose `item_length` is 1. Both are counted here.
"""
import math

import numpy as np


def sequence_interactions(dataset):
    """(users, items) int64 arrays of every interaction of a built sequential `dataset`."""
    inter = dataset.inter_feat
    length_field = dataset.config["ITEM_LIST_LENGTH_FIELD"]
    if length_field not in inter.interaction:
        raise ValueError("expected a built RecBole sequential dataset (after data_preparation)")
    users = inter[dataset.uid_field].numpy()
    items = inter[dataset.iid_field].numpy()
    first = inter[length_field].numpy() == 1
    history = inter[dataset.iid_field + dataset.config["LIST_SUFFIX"]].numpy()
    return (np.concatenate([users, users[first]]).astype(np.int64),
            np.concatenate([items, history[first, 0]]).astype(np.int64))


def fraction_count(fraction, total):
    """How many of `total` things a `fraction` of them is (rounded down)."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"a fraction must lie in [0, 1], got {fraction}")
    return math.floor(fraction * total + 1e-9)
