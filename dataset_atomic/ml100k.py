"""ml-100k from RecBole's installed example data: all interactions, movie titles as `title`."""
import os

import recbole

from dataset_atomic.atomic_files import (ConvertError, check_token, clean_title, dataset_files,
                                         has_dataset, sort_interactions, write_inter, write_item)
from recbole_llm2rec.atomic import atomic_rows

NAME = "ml-100k"
TITLE = "movie_title"


def source_dir():
    """Folder of RecBole's bundled `ml-100k` atomic files."""
    return os.path.join(os.path.dirname(recbole.__file__), "dataset_example", NAME)


def _read_titles(path):
    """[(item, cleaned title)] of RecBole's ml-100k `.item`, in file order."""
    items = {}
    with atomic_rows(path, ["item_id", TITLE], ConvertError, non_empty=["item_id"]) as (_, rows):
        for row in rows:
            item, title = row.values["item_id"], clean_title(row.values[TITLE])
            if not title:
                raise ConvertError("empty title", path, row.line, field=TITLE, value=title)
            if item in items:
                raise ConvertError("item given twice", path, row.line, field="item_id", value=item)
            items[item] = title
    return list(items.items())


def convert(out_dir, src_dir=None):
    """Write `<out_dir>/ml-100k/ml-100k.{inter,item}` unless valid ones exist. Returns the folder."""
    folder, inter_path, item_path = dataset_files(out_dir, NAME)
    if has_dataset(out_dir, NAME):
        return folder
    src = src_dir or source_dir()
    src_inter, src_item = (os.path.join(src, f"{NAME}.{ext}") for ext in ("inter", "item"))
    items = _read_titles(src_item)
    known = {item for item, _ in items}
    rows = []
    needed = ["user_id", "item_id", "timestamp"]
    with atomic_rows(src_inter, needed, ConvertError, non_empty=needed) as (_, lines):
        for row in lines:
            user, item, ts = (row.values[f] for f in needed)
            check_token(src_inter, row.line, "user_id", user)
            if item not in known:
                raise ConvertError(f"item is not in {src_item}", src_inter, row.line,
                                   field="item_id", value=item)
            rows.append((user, item, float(ts)))
    write_item(item_path, items)
    write_inter(inter_path, sort_interactions(rows))
    return folder
