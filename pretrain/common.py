"""Shared I/O for the pre-training stages: reading RecBole atomic datasets and the item texts
embedded from them (titles, LLMEmb's attribute prompts)."""
import os

from recbole_llm2rec.atomic import atomic_rows
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.feat import dataset_folder


INSTRUCTION = "The item has the following attributes: \n "  # LLMEmb's item prompt
TEXT_TYPES = ("token", "token_seq")  # .item columns that are item text


class DataError(InputError):
    """An input dataset is unusable for pre-training or extraction."""


def dataset_file(data_dir, dataset, suffix):
    """Path of `<dataset>.<suffix>` in the dataset's folder: `<data_dir>/<dataset>/`, or
    `data_dir` itself when it already is that folder (`recbole_llm2rec.feat.dataset_folder`)."""
    return os.path.join(dataset_folder(data_dir, dataset), f"{dataset}.{suffix}")


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


def read_item_attributes(item_path, title_field="title", id_field="item_id"):
    """Attributes of every item of a `.item` file: every `token`/`token_seq` column but the id,
    the title first, empty values left out. Returns (item tokens, [[(name, value), ...]],
    attribute column names). DataError for an empty title or a duplicate item."""
    tokens, attributes = [], []
    with atomic_rows(item_path, [id_field, title_field], DataError,
                     non_empty=[id_field], unique=[id_field]) as (header, rows):
        names = [title_field] + [n for n, t in zip(header.names, header.types)
                                 if t in TEXT_TYPES and n not in (id_field, title_field)]
        for row in rows:
            tok = row.values[id_field]
            pairs = [(n, " ".join(row.values[n].split())) for n in names]
            if not pairs[0][1]:
                raise DataError(f"item {tok!r} has an empty {title_field!r}", item_path,
                                row.line, field=title_field, value=row.values[title_field])
            tokens.append(tok)
            attributes.append([(n, v) for n, v in pairs if v])
    return tokens, attributes, names


def item_prompt(attributes):
    """The LLMEmb prompt of one item from its [(name, value), ...]."""
    return INSTRUCTION + "; ".join(f"{name} is {value}" for name, value in attributes)


def item_prompts(item_path, title_field="title"):
    """(item tokens, full prompts) of a `.item` file, in file order."""
    tokens, attributes, _ = read_item_attributes(item_path, title_field)
    return tokens, [item_prompt(a) for a in attributes]
