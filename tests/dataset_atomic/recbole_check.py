"""Loads a produced dataset the way training does: RecBole Config + create_dataset with our props."""
import os

from recbole.config import Config
from recbole.data import create_dataset, data_preparation

OVERALL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "props", "overall.yaml")


def recbole_counts(data_path, name, split=True):
    """(users, items) as RecBole counts them, without its [PAD] entry; `split` also runs the
    leave-one-out split."""
    config = Config(model="SASRec", dataset=name, config_file_list=[OVERALL],
                    config_dict={"data_path": data_path, "show_progress": False,
                                 "train_batch_size": 64, "eval_batch_size": 64})
    dataset = create_dataset(config)
    if split:
        data_preparation(config, dataset)
    return dataset.user_num - 1, dataset.item_num - 1
