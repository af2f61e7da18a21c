"""User histories from RecBole atomic files, and the CSFT / title examples built from them."""
import os
from collections import defaultdict

from pretrain.common import DataError, dataset_file, read_item_titles
from recbole_llm2rec.atomic import atomic_rows
from recbole_llm2rec.inter_checks import check_dataset

HELD_OUT = 2  # each user's last two items are the downstream valid/test targets


def read_user_sequences(inter_path):
    """Item tokens of each user in time order (file order breaks ties). Returns {user: [item, ...]}."""
    if not os.path.isfile(inter_path):
        raise DataError("interaction file not found", inter_path)
    rows = defaultdict(list)
    with atomic_rows(inter_path, ["user_id", "item_id"], DataError,
                     non_empty=["user_id", "item_id"]) as (header, lines):
        has_time = "timestamp" in header.names
        if has_time and header.type_of("timestamp") != "float":
            raise DataError("the time field must have type float", inter_path, 1,
                            field="timestamp", value=header.type_of("timestamp"))
        for row in lines:
            ts = float(row.values["timestamp"] or 0.0) if has_time else 0.0
            rows[row.values["user_id"]].append((ts, row.line, row.values["item_id"]))
    return {user: [item for _, _, item in sorted(events)] for user, events in rows.items()}


def training_part(sequence):
    """The part of one user's item sequence usable for pre-training: all but the last two items."""
    return sequence[:-HELD_OUT] if len(sequence) > HELD_OUT else []


def load_dataset_titles(data_path, dataset, title_field="title"):
    """Titles of a dataset's items. Returns {item token: title}."""
    tokens, titles = read_item_titles(dataset_file(data_path, dataset, "item"), title_field)
    return dict(zip(tokens, titles))


def csft_examples(data_path, dataset, max_history=10, title_field="title"):
    """CSFT examples of one dataset: (history titles joined by ", ", next title) for every
    training prefix of every user. Returns (list of (input, output) pairs, stats dict)."""
    titles = load_dataset_titles(data_path, dataset, title_field)
    inter_path = dataset_file(data_path, dataset, "inter")
    sequences = read_user_sequences(inter_path)
    check_dataset(inter_path, dataset_file(data_path, dataset, "item"), need=0, error=DataError)
    examples = []
    for user, items in sequences.items():
        seq = [titles[i] for i in training_part(items)]
        for t in range(1, len(seq)):
            examples.append((", ".join(seq[max(0, t - max_history):t]), seq[t]))
    if not examples:
        raise DataError(f"no user has 4 or more interactions, so there is no CSFT example "
                        f"after holding out each user's last {HELD_OUT} items", inter_path)
    stats = {"users": len(sequences), "items": len(titles), "examples": len(examples)}
    return examples, stats


def training_titles(data_path, dataset, title_field="title"):
    """Distinct titles of the items in a dataset's .item file, in file order. Returns [str]."""
    return list(dict.fromkeys(load_dataset_titles(data_path, dataset, title_field).values()))
