"""What a random ranking scores, computed on the same data as a model (a bar a trained model
must clear by a margin)."""
import numpy as np


def random_recall(dataset, k):
    """Expected test Recall@k (= hit rate, one target per user) of a uniformly random full
    ranking under RecBole's leave-one-out protocol: each user's target is ranked among the items
    not in their history (RecBole masks those). `dataset` is the filtered RecBole dataset."""
    users = dataset.inter_feat[dataset.uid_field].numpy()
    counts = np.bincount(users)[1:]  # interactions per user; id 0 is [PAD]
    counts = counts[counts > 0]
    candidates = dataset.item_num - 1 - (counts - 1)  # all real items but the user's history
    return float(np.mean(np.minimum(1.0, k / candidates)))
