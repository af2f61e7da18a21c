"""Rank of each test case's target under full ranking (and among sampled candidates), and the
Recall/NDCG computed from those ranks, so metrics can be split by any group of test cases.

With one target per test case (leave-one-out), RecBole's Recall@K is 1 when the target is in the
top K and NDCG@K is 1 / log2(rank + 2) (rank 0 = top), averaged over test cases; the metrics here
are the same numbers, computed from the stored ranks. A rank counts the items scored strictly
higher than the target (ties resolve in the target's favour), after RecBole's own masking
(item 0 = [PAD] never ranks; for non-sequential models the user's history is masked).
"""
import math

import numpy as np
import torch


@torch.no_grad()
def rank_targets(model, eval_data, negatives=None, transform=None):
    """Ranks of every test case of a RecBole full-sort dataloader.

    `negatives` [user_num, k] (see `sampled.sample_negatives`) adds each case's rank among its
    target and its user's k negatives; `transform(interaction)` changes each batch's input first
    (e.g. `shuffle.shuffle_histories`). Returns {"user", "target", "rank"[, "sampled_rank"]}
    as int64 arrays of one entry per test case.
    """
    model.eval()
    device = next(model.parameters()).device
    uid_field = eval_data._dataset.uid_field
    n_items = eval_data._dataset.item_num
    out = {"user": [], "target": [], "rank": [], "sampled_rank": []}
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
        if negatives is not None:
            candidates = torch.as_tensor(negatives, device=device)[users]  # [cases, k]
            out["sampled_rank"].append((rows.gather(1, candidates) > target).sum(1).cpu())
    return {k: torch.cat(v).numpy().astype(np.int64) for k, v in out.items() if v}


def metrics_from_ranks(ranks, topk=(10, 20)):
    """Recall@K and NDCG@K averaged over the cases, and their number "n" (0 cases: metrics None)."""
    ranks = np.asarray(ranks)
    result = {}
    for k in topk:
        hit = ranks < k
        result[f"recall@{k}"] = float(hit.mean()) if len(ranks) else None
        result[f"ndcg@{k}"] = float((hit / np.log2(ranks + 2.0)).mean()) if len(ranks) else None
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
