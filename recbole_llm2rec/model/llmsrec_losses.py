"""LLM-SRec's losses: next-item retrieval against the target and negatives (Eq. 1), the
distillation of the teacher's user representation (Eq. 2) and uniformity (Eq. 3)."""
import torch
import torch.nn.functional as F

NEGATIVES = ("in_batch", "sampled")
REDUCTIONS = ("sum", "mean")


def uniformity(x, log=False, t=2.0):
    """Uniformity of the rows of x: E_{i<j} exp(-t ||x_i - x_j||^2) (the paper's Eq. 3 and the
    reference code), or its log with `log` (Wang & Isola). 0 for fewer than 2 rows."""
    if len(x) < 2:
        return x.sum() * 0.0
    value = torch.pdist(x, p=2).pow(2).mul(-t).exp().mean()
    return value.log() if log else value


def distill_losses(user, teacher_user, reduction="sum", log=False):
    """(distillation, uniformity of both sets) on L2-normalised f_user and f_CF-user outputs.
    Distillation: squared distance per user (= 2 - 2 cos), averaged over users (`sum` over the
    dimensions), or the reference's MSE averaged over users x dimensions (`mean`), which is the
    former / embedding width."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r} not in {REDUCTIONS}")
    user, teacher_user = F.normalize(user, dim=-1), F.normalize(teacher_user, dim=-1)
    squared = (user - teacher_user).pow(2)
    distill = squared.sum(-1).mean() if reduction == "sum" else squared.mean()
    return distill, uniformity(user, log) + uniformity(teacher_user, log)


def in_history(histories, candidates):
    """[B, C] bool: row b's candidate item c is among its history items (`histories` [B, L],
    0 = pad; `candidates` [B, C] item ids)."""
    return (histories.unsqueeze(-1) == candidates.unsqueeze(1)).any(1) & (candidates != 0)


def in_batch_candidates(targets, histories):
    """(distinct targets [M], candidates [B, M] indices into them with each row's own target
    first, blocked [B, M]: the other targets that are in the row's history)."""
    items, labels = torch.unique(targets, return_inverse=True)
    columns = torch.arange(len(items), device=labels.device)
    candidates = torch.argsort((columns != labels.view(-1, 1)).int(), dim=1, stable=True)
    blocked = in_history(histories, items[candidates]) & (candidates != labels.view(-1, 1))
    return items, candidates, blocked


def sample_negatives(histories, targets, n_items, k, generator=None):
    """[B, k] item ids drawn uniformly from 1..n_items-1, none equal to the row's target or in
    its history (the paper's "items the user has not interacted with"), by redrawing."""
    b = len(targets)
    negatives = torch.randint(1, n_items, (b, k), generator=generator)
    seen = torch.cat([histories.cpu(), targets.cpu().view(-1, 1)], dim=1)
    for _ in range(100):
        bad = (negatives.unsqueeze(-1) == seen.unsqueeze(1)).any(-1)
        if not bad.any():
            return negatives
        negatives[bad] = torch.randint(1, n_items, (int(bad.sum()),), generator=generator)
    raise ValueError("cannot draw negatives: users have interacted with almost every item")


def retrieval_loss(user, item_reps, candidates, blocked=None):
    """Cross-entropy of each row's candidate 0 (its target) among its candidates.
    user [B, d]; item_reps [M, d] rows of the distinct items; candidates [B, C] indices into
    item_reps; blocked [B, C] bool: candidates left out of a row's softmax (never column 0).
    Scores are unnormalised dot products (as the reference)."""
    logits = (user.unsqueeze(1) * item_reps[candidates]).sum(-1)
    if blocked is not None:
        logits = logits.masked_fill(blocked, float("-inf"))
    return F.cross_entropy(logits, torch.zeros(len(user), dtype=torch.long, device=user.device))
