"""Shared I/O for the pre-training stages: reading RecBole atomic datasets."""
import os

from recbole_llm2rec.atomic import atomic_rows
from recbole_llm2rec.errors import InputError


class DataError(InputError):
    """An input dataset is unusable for pre-training or extraction."""


def dataset_file(data_dir, dataset, suffix):
    """Path of `<data_dir>/<dataset>/<dataset>.<suffix>`, or of `<data_dir>/<dataset>.<suffix>`
    when `data_dir` already is the dataset's folder."""
    nested = os.path.join(data_dir, dataset, f"{dataset}.{suffix}")
    flat = os.path.join(data_dir, f"{dataset}.{suffix}")
    return flat if os.path.isfile(flat) and not os.path.isfile(nested) else nested


def read_item_titles(item_path, title_field="title"):
    """Read (item tokens, titles) from a RecBole `.item` file, in file order.

    Raises DataError naming the file, line and value for a bad row (see
    `recbole_llm2rec.atomic`), a missing title column, an empty title, or a duplicate item.
    """
    if not os.path.isfile(item_path):
        raise DataError("item file not found", item_path)
    tokens, titles = [], []
    with atomic_rows(item_path, ["item_id", title_field], DataError,
                     non_empty=["item_id"], unique=["item_id"]) as (_, rows):
        for row in rows:
            tok, title = row.values["item_id"], " ".join(row.values[title_field].split())
            if not title:
                raise DataError(f"item {tok!r} has an empty {title_field!r}", item_path,
                                row.line, field=title_field, value=row.values[title_field])
            tokens.append(tok)
            titles.append(title)
    return tokens, titles
