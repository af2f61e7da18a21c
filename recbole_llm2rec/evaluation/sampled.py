"""Sampled evaluation (`uni100`): the target ranked among 100 items the user never interacted with.

RecBole's own `uni100` sampler excludes only the items a user has as *targets*, so the first
item of a user's history (never a target in a sequential dataset) can be drawn as a negative.
Here the negatives exclude every item of the user's whole sequence (training, validation and
test, the first item included) and [PAD]; they are drawn uniformly without replacement, per
user from `numpy.random.default_rng([seed, user_id])`, so every model on a dataset is ranked
against the same candidates.
"""
import numpy as np

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.evaluation.interactions import sequence_interactions


def sample_negatives(dataset, n=100, seed=0):
    """[user_num, n] item ids: for each user, n distinct items outside the user's sequence.

    `dataset` is the whole built dataset (as `data_preparation` leaves it). Row 0 ([PAD] user)
    and users without interactions are sampled from all items."""
    users, items = sequence_interactions(dataset)
    n_items = dataset.item_num
    order = np.argsort(users, kind="stable")
    bounds = np.searchsorted(users[order], np.arange(dataset.user_num + 1))
    negatives = np.zeros((dataset.user_num, n), dtype=np.int64)
    for user in range(dataset.user_num):
        used = np.unique(items[order[bounds[user]:bounds[user + 1]]])
        free = n_items - 1 - len(used[used > 0])
        if free < n:
            raise InputError(f"user id {user} has only {free} items outside their sequence, "
                             f"fewer than the {n} negatives asked for", field="negatives",
                             value=n)
        rng = np.random.default_rng([int(seed), user])
        drawn = []
        while len(drawn) < n:
            candidates = rng.integers(1, n_items, size=2 * n + len(used))
            candidates = candidates[~np.isin(candidates, used)]
            _, first = np.unique(candidates, return_index=True)
            fresh = [c for c in candidates[np.sort(first)] if c not in drawn]
            drawn.extend(fresh[:n - len(drawn)])
        negatives[user] = drawn
    return negatives
