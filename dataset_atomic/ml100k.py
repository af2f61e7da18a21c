"""ml-100k from RecBole's installed example data: all interactions, movie titles as `title`."""
import os

import recbole

from dataset_atomic.atomic_files import (ConvertError, check_token, clean_title, dataset_files,
                                         has_dataset, sort_interactions, write_inter, write_item)
from pretrain.common import read_atomic_header, read_item_titles

NAME = "ml-100k"


def source_dir():
    """Folder of RecBole's bundled `ml-100k` atomic files."""
    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", NAME)


def _read_interactions(path):
    """Yield (line number, user, item, timestamp text) from RecBole's ml-100k `.inter`."""
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: file not found (is recbole installed completely?)")
    with open(path, encoding="utf-8") as fh:
        fields = read_atomic_header(path, fh)
        missing = [f for f in ("user_id", "item_id", "timestamp") if f not in fields]
        if missing:
            raise ConvertError(f"{path}: header lacks fields {missing} (has {sorted(fields)})")
        cols = [fields["user_id"], fields["item_id"], fields["timestamp"]]
        for lineno, line in enumerate(fh, start=2):
            values = line.rstrip("\r\n").split("\t")
            if values == [""]:
                continue
            if len(values) != len(fields):
                raise ConvertError(f"{path}:{lineno}: expected {len(fields)} fields, got "
                                   f"{len(values)}: {line[:80]!r}")
            yield (lineno, *(values[c] for c in cols))


def convert(out_dir, src_dir=None):
    """Write `<out_dir>/ml-100k/ml-100k.{inter,item}` unless valid ones exist. Returns the folder."""
    folder, inter_path, item_path = dataset_files(out_dir, NAME)
    if has_dataset(out_dir, NAME):
        return folder
    src = src_dir or source_dir()
    src_inter, src_item = (os.path.join(src, f"{NAME}.{ext}") for ext in ("inter", "item"))
    tokens, titles = read_item_titles(src_item, title_field="movie_title")
    items = [(item, clean_title(title)) for item, title in zip(tokens, titles)]
    known = set(tokens)
    rows = []
    for lineno, user, item, ts in _read_interactions(src_inter):
        check_token(f"{src_inter}:{lineno}", "user", user)
        if item not in known:
            raise ConvertError(f"{src_inter}:{lineno}: item {item!r} is not in {src_item}")
        try:
            seconds = float(ts)
        except ValueError:
            raise ConvertError(f"{src_inter}:{lineno}: timestamp {ts!r} is not a number") from None
        rows.append((user, item, seconds))
    write_item(item_path, items)
    write_inter(inter_path, sort_interactions(rows))
    return folder
