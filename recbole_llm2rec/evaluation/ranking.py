"""Rank of each test case's target under full ranking (and among sampled candidates), and the
Recall/NDCG computed from those ranks, so metrics can be split by any group of test cases.

With one target per test case (leave-one-out), RecBole's Recall@K is 1 when the target is in the
top K and NDCG@K is 1 / log2(rank + 2) (rank 0 = top), averaged over test cases; the metrics here
are the same numbers, computed from the stored ranks, after RecBole's own masking (item 0 = [PAD]
never ranks; for non-sequential models the user's history is masked).

Ties: a rank counts the items scored strictly higher than the target, and `ties` the other items
with exactly its score (text models give items with identical titles identical scores). The
metrics are their expectation when ties are broken uniformly at random: the target is equally
likely at each rank from `rank` to `rank + ties`. RecBole's `torch.topk` breaks ties in an
arbitrary order, so its numbers can differ from these only when ties exist.
"""
import math

import numpy as np
import torch


@torch.no_grad()
def rank_targets(model, eval_data, negatives=None, transform=None):
    """Ranks of every test case of a RecBole full-sort dataloader.

    `negatives` [user_num, k] (see `sampled.sample_negatives`) adds each case's rank among its
    target and its user's k negatives; `transform(interaction)` changes each batch's input first
    (e.g. `shuffle.shuffle_histories`). Returns {"user", "target", "rank", "ties"[,
    "sampled_rank", "sampled_ties"]} as int64 arrays of one entry per test case.
    """
    model.eval()
    device = next(model.parameters()).device
    uid_field = eval_data._dataset.uid_field
    n_items = eval_data._dataset.item_num
    out = {k: [] for k in ("user", "target", "rank", "ties", "sampled_rank", "sampled_ties")}
    for interaction, history_index, positive_u, positive_i in eval_data:
        if transform is not None:
            interaction = transform(interaction)
        scores = model.full_sort_predict(interaction.to(device)).view(-1, n_items).float()
        scores[:, 0] = -math.inf
        if history_index is not None:
            scores[history_index] = -math.inf
        positive_u, positive_i = positive_u.to(device), positive_i.to(device)
        rows = scores[positive_u]  # [cases, n_items]
        target = rows.gather(1, positive_i.unsqueeze(1))  # [cases, 1]
        users = interaction[uid_field].to(device)[positive_u]
        out["user"].append(users.cpu())
        out["target"].append(positive_i.cpu())
        out["rank"].append((rows > target).sum(1).cpu())
        out["ties"].append((rows == target).sum(1).cpu() - 1)  # the target itself is not a tie
        if negatives is not None:
            candidates = torch.as_tensor(negatives, device=device)[users]  # [cases, k]
            sampled = rows.gather(1, candidates)
            out["sampled_rank"].append((sampled > target).sum(1).cpu())
            out["sampled_ties"].append((sampled == target).sum(1).cpu())
    return {k: torch.cat(v).numpy().astype(np.int64) for k, v in out.items() if v}


def metrics_from_ranks(ranks, ties=None, topk=(10, 20)):
    """Recall@K and NDCG@K averaged over the cases, and their number "n" (0 cases: metrics None).

    With `ties`, a case's metrics are averaged over the ranks rank .. rank + ties."""
    ranks = np.asarray(ranks, dtype=np.int64)
    ties = np.zeros_like(ranks) if ties is None else np.asarray(ties, dtype=np.int64)
    result = {}
    for k in topk:
        recall, ndcg = np.zeros(len(ranks)), np.zeros(len(ranks))
        for r in range(k):  # the share of the target's equally likely positions that is r
            at_r = ((ranks <= r) & (r <= ranks + ties)) / (ties + 1.0)
            recall += at_r
            ndcg += at_r / np.log2(r + 2.0)
        result[f"recall@{k}"] = float(recall.mean()) if len(ranks) else None
        result[f"ndcg@{k}"] = float(ndcg.mean()) if len(ranks) else None
    result["n"] = int(len(ranks))
    return result


def random_metrics(n_candidates, topk=(10, 20)):
    """Expected Recall@K / NDCG@K of a uniformly random ranking of `n_candidates` items (one
    target among them)."""
    result = {}
    for k in topk:
        top = min(k, n_candidates)
        result[f"recall@{k}"] = top / n_candidates
        result[f"ndcg@{k}"] = sum(1.0 / math.log2(r + 2) for r in range(top)) / n_candidates
    return result
