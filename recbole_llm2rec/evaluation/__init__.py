"""Evaluation protocols and analyses beyond RecBole's: the cold-start item split, item groups
by training count, the shuffled-history test and sampled ranking with exact negatives.
See docs/experiments.md."""
from recbole_llm2rec.evaluation.analyses import ANALYSES, evaluate_test
from recbole_llm2rec.evaluation.shuffle import shuffle_histories, shuffle_item_sequences

__all__ = ["ANALYSES", "evaluate_test", "shuffle_histories", "shuffle_item_sequences"]
