"""Shared I/O for the pre-training stages: reading RecBole atomic datasets."""
import os


class DataError(ValueError):
    """An input dataset is unusable for pre-training or extraction."""


def dataset_file(data_dir, dataset, suffix):
    """Path of `<data_dir>/<dataset>/<dataset>.<suffix>`, or of `<data_dir>/<dataset>.<suffix>`
    when `data_dir` already is the dataset's folder."""
    nested = os.path.join(data_dir, dataset, f"{dataset}.{suffix}")
    flat = os.path.join(data_dir, f"{dataset}.{suffix}")
    return flat if os.path.isfile(flat) and not os.path.isfile(nested) else nested


def read_atomic_header(path, fh):
    """Parse an atomic file's header line. Returns {field_name: column index}."""
    header = fh.readline().rstrip("\r\n")
    if not header:
        raise DataError(f"{path}: empty file, expected a RecBole atomic header")
    return {col.split(":", 1)[0]: i for i, col in enumerate(header.split("\t"))}


def read_item_titles(item_path, title_field="title"):
    """Read (item tokens, titles) from a RecBole `.item` file, in file order.

    Raises DataError naming the file, line and value for a missing title column, an empty
    title, or a duplicate item.
    """
    if not os.path.isfile(item_path):
        raise DataError(f"{item_path}: item file not found")
    tokens, titles, seen = [], [], {}
    with open(item_path, encoding="utf-8") as fh:
        fields = read_atomic_header(item_path, fh)
        if "item_id" not in fields:
            raise DataError(f"{item_path}: no item_id column (header fields: {sorted(fields)})")
        if title_field not in fields:
            raise DataError(f"{item_path}: no {title_field!r} column to embed "
                            f"(header fields: {sorted(fields)}); pass the title field's name")
        id_col, title_col = fields["item_id"], fields[title_field]
        for lineno, line in enumerate(fh, start=2):
            line = line.rstrip("\r\n")
            if not line:
                continue
            cols = line.split("\t")
            if len(cols) <= max(id_col, title_col):
                raise DataError(f"{item_path}:{lineno}: expected {len(fields)} tab-separated "
                                f"fields, got {len(cols)}: {line[:80]!r}")
            tok, title = cols[id_col], " ".join(cols[title_col].split())
            if not title:
                raise DataError(f"{item_path}:{lineno}: item {tok!r} has an empty {title_field!r}")
            if tok in seen:
                raise DataError(f"{item_path}:{lineno}: item {tok!r} already given on line "
                                f"{seen[tok]}")
            seen[tok] = lineno
            tokens.append(tok)
            titles.append(title)
    if not tokens:
        raise DataError(f"{item_path}: no items")
    return tokens, titles
