"""User histories from RecBole atomic files, and the CSFT / title examples built from them."""
import os
from collections import defaultdict

from pretrain.common import DataError, dataset_file, read_atomic_header, read_item_titles

HELD_OUT = 2  # each user's last two items are the downstream valid/test targets


def read_user_sequences(inter_path):
    """Item tokens of each user in time order (file order breaks ties). Returns {user: [item, ...]}."""
    if not os.path.isfile(inter_path):
        raise DataError(f"{inter_path}: interaction file not found")
    rows = defaultdict(list)
    with open(inter_path, encoding="utf-8") as fh:
        fields = read_atomic_header(inter_path, fh)
        for name in ("user_id", "item_id"):
            if name not in fields:
                raise DataError(f"{inter_path}: no {name} column (header fields: {sorted(fields)})")
        u_col, i_col, t_col = fields["user_id"], fields["item_id"], fields.get("timestamp")
        for lineno, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cols = line.split("\t")
            if len(cols) < len(fields):
                raise DataError(f"{inter_path}:{lineno}: expected {len(fields)} tab-separated "
                                f"fields, got {len(cols)}: {line[:80]!r}")
            try:
                ts = float(cols[t_col]) if t_col is not None else 0.0
            except ValueError:
                raise DataError(f"{inter_path}:{lineno}: timestamp {cols[t_col]!r} is not a "
                                f"number") from None
            rows[cols[u_col]].append((ts, lineno, cols[i_col]))
    if not rows:
        raise DataError(f"{inter_path}: no interactions")
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
    examples = []
    for user, items in sequences.items():
        missing = next((i for i in items if i not in titles), None)
        if missing is not None:
            raise DataError(f"{inter_path}: item {missing!r} (user {user!r}) has no title in "
                            f"{dataset_file(data_path, dataset, 'item')}")
        seq = [titles[i] for i in training_part(items)]
        for t in range(1, len(seq)):
            examples.append((", ".join(seq[max(0, t - max_history):t]), seq[t]))
    if not examples:
        raise DataError(f"{inter_path}: no user has 4 or more interactions, so there is no "
                        f"CSFT example after holding out each user's last {HELD_OUT} items")
    stats = {"users": len(sequences), "items": len(titles), "examples": len(examples)}
    return examples, stats


def training_titles(data_path, dataset, title_field="title"):
    """Distinct titles of the items in a dataset's .item file, in file order. Returns [str]."""
    return list(dict.fromkeys(load_dataset_titles(data_path, dataset, title_field).values()))
