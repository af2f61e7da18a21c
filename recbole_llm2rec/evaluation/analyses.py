"""Test-set analyses of a trained model, without retraining: full ranking split by item group,
the shuffled-history test and sampled (`uni100`) ranking, next to the expected metrics of a
random ranking.

    from recbole_llm2rec.evaluation import evaluate_test
    report = evaluate_test(model, dataset, train_data, test_data, cold_items=None)
    report["full"]["all"], report["full"]["popular"], report["shuffled"]["all"], ...

Every mode ("full", "shuffled", "uni100") holds the metrics of all test cases ("all") and of the
cases whose target falls in each item group: popular/unpopular and frequent/rare by training
count (`groups`), and warm/cold when `cold_items` (ids withheld from training, see `cold_start`)
is given. Each metrics dict carries the number of cases "n".
"""
import numpy as np

from recbole_llm2rec.evaluation.groups import count_groups, training_counts
from recbole_llm2rec.evaluation.ranking import metrics_from_ranks, random_metrics, rank_targets
from recbole_llm2rec.evaluation.sampled import sample_negatives
from recbole_llm2rec.evaluation.shuffle import shuffle_histories

ANALYSES = ("popularity", "frequent_rare", "shuffle", "uni100")
_GROUPS = {"popularity": ("popular", "unpopular"), "frequent_rare": ("frequent", "rare")}
N_NEGATIVES = 100


def item_groups(train_dataset, analyses=ANALYSES, cold_items=None):
    """{group name: sorted item ids} for the asked analyses (and warm/cold given cold_items)."""
    groups = count_groups(training_counts(train_dataset))
    chosen = {g: groups[g] for a in analyses for g in _GROUPS.get(a, ())}
    if cold_items is not None:
        cold = np.unique(np.asarray(cold_items, dtype=np.int64))
        chosen["cold"] = cold
        chosen["warm"] = np.setdiff1d(np.arange(1, train_dataset.item_num), cold)
    return chosen


def grouped_metrics(ranked, groups, topk, prefix=""):
    """Metrics of all cases and of the cases whose target is in each group (`prefix` "sampled_"
    reads the sampled ranks)."""
    ranks, ties = ranked[prefix + "rank"], ranked[prefix + "ties"]
    result = {"all": metrics_from_ranks(ranks, ties, topk)}
    for name, ids in groups.items():
        chosen = np.isin(ranked["target"], ids)
        result[name] = metrics_from_ranks(ranks[chosen], ties[chosen], topk)
    return result


def evaluate_test(model, dataset, train_data, test_data, analyses=ANALYSES, cold_items=None,
                  seed=0, topk=(10, 20)):
    """Run the analyses on `test_data` (a full-sort dataloader) with the model as it is.

    `dataset` is the whole dataset as `data_preparation` leaves it (for uni100's negatives).
    Returns {"full", "shuffled"?, "uni100"?: {group: metrics}, "random": {mode: metrics},
    "group_sizes": {group: n_items}, "seed": seed}.
    """
    unknown = sorted(set(analyses) - set(ANALYSES))
    if unknown:
        raise ValueError(f"unknown analyses {unknown}: choose from {list(ANALYSES)}")
    groups = item_groups(train_data._dataset, analyses, cold_items)
    negatives = sample_negatives(dataset, N_NEGATIVES, seed) if "uni100" in analyses else None
    ranked = rank_targets(model, test_data, negatives=negatives)
    report = {"full": grouped_metrics(ranked, groups, topk),
              "random": {"full": random_metrics(dataset.item_num - 1, topk)},
              "group_sizes": {name: int(len(ids)) for name, ids in groups.items()},
              "seed": seed}
    if negatives is not None:
        report["uni100"] = grouped_metrics(ranked, groups, topk, prefix="sampled_")
        report["random"]["uni100"] = random_metrics(N_NEGATIVES + 1, topk)
    if "shuffle" in analyses:
        config = test_data._dataset.config
        shuffled = rank_targets(model, test_data,
                                transform=lambda inter: shuffle_histories(inter, config, seed))
        report["shuffled"] = grouped_metrics(shuffled, groups, topk)
    return report
