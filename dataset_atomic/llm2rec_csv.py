"""The LLM2Rec / DecodingMatters CSV layout (one row per prefix: <=10 history items + target).

Columns used: `user_id`, `history_item_title`, `item_title`, `history_timestamp`, `timestamp`,
and as item token `item_asin`/`item_asins` when present, else `item_id`/`history_item_id`.
History columns are Python list literals. Given all split files (train, valid, test), each
user's full sequence is rebuilt by chaining rows: a row's history is the last <=10 items
before its target.
"""
import ast
import collections
import csv
import io
import sys

from tqdm import tqdm

from dataset_atomic.atomic_files import (ConvertError, check_token, clean_title, open_source,
                                         output_files, sort_interactions, write_inter, write_item)

TOKEN_COLUMNS = (("item_asin", "item_asins"), ("item_id", "history_item_id"))
NEEDED = ("user_id", "history_item_title", "item_title", "history_timestamp", "timestamp")


def _list(path, lineno, column, text):
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = None
    if not isinstance(value, (list, tuple)):
        raise ConvertError("not a list literal", path, lineno, field=column, value=text)
    return [str(v) for v in value]


def _read_rows(path):
    """Yield (line, user, history [(item, title, ts)], target (item, title, ts)) per CSV row."""
    csv.field_size_limit(sys.maxsize)
    with open_source(path) as raw:
        reader = csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8", newline=""))
        fields = reader.fieldnames or []
        missing = [c for c in NEEDED if c not in fields]
        if missing:
            raise ConvertError(f"header lacks columns {missing} (has {fields})", path, 1)
        pairs = [pair for pair in TOKEN_COLUMNS if pair[0] in fields]
        if not pairs:
            raise ConvertError(f"header has no item id column (item_asin or item_id): {fields}",
                               path, 1)
        target_col, history_col = pairs[0]
        if history_col not in fields:
            raise ConvertError(f"has {target_col!r} but no {history_col!r} column", path, 1)
        for row in tqdm(reader, desc=path, unit=" rows", mininterval=2):
            lineno = reader.line_num
            if None in row or any(row[c] is None for c in NEEDED):
                raise ConvertError("wrong number of columns", path, lineno)
            items = _list(path, lineno, history_col, row[history_col])
            titles = _list(path, lineno, "history_item_title", row["history_item_title"])
            stamps = _list(path, lineno, "history_timestamp", row["history_timestamp"])
            if not len(items) == len(titles) == len(stamps):
                raise ConvertError(f"history lists differ in length ({len(items)} items, "
                                   f"{len(titles)} titles, {len(stamps)} times)", path, lineno)
            stamps = [_number(path, lineno, t) for t in stamps + [row["timestamp"]]]
            history = list(zip(items, titles, stamps))
            yield lineno, row["user_id"], history, (row[target_col], row["item_title"], stamps[-1])


def _number(path, lineno, text):
    try:
        return float(text)
    except ValueError:
        raise ConvertError("not a number", path, lineno, field="timestamp", value=text) from None


def _chain(user, rows):
    """A user's full sequence [(item, title, ts)] from its prefix rows (see module docstring)."""
    rows = sorted(rows, key=lambda r: len(r[1]))
    if len(rows[0][1]) != 1:
        raise ConvertError(f"the user's earliest row has {len(rows[0][1])} history items, "
                           f"expected 1 (are all split files given?)", *rows[0][0],
                           field="user_id", value=user)
    seq = list(rows[0][1])
    pending = collections.defaultdict(list)  # history items -> rows waiting for that prefix
    for row in rows:
        pending[tuple(h[0] for h in row[1])].append(row)
    while pending:
        key = tuple(item for item, _, _ in seq[-10:])
        candidates = pending.get(key)
        if not candidates:
            row = next(iter(pending.values()))[0]
            raise ConvertError("this row's history does not follow the user's other rows (are all "
                               "split files given?)", *row[0], field="user_id", value=user)
        row = min(candidates, key=lambda r: r[2][2])
        candidates.remove(row)
        if not candidates:
            del pending[key]
        seq.append(row[2])
    return seq


def convert(csv_paths, out_dir, name, timestamp_unit="auto", overwrite=False):
    """Rebuild `<out_dir>/<name>/` from the split CSV files. Returns (folder, counts dict)."""
    if timestamp_unit not in ("auto", "s", "ms"):
        raise ConvertError("must be auto, s or ms", field="timestamp_unit", value=timestamp_unit)
    folder, inter_path, item_path = output_files(out_dir, name, overwrite)
    for path in csv_paths:
        open_source(path).close()
    by_user, titles, seen = collections.defaultdict(list), {}, set()
    duplicates = rows_read = 0
    for path in csv_paths:
        for lineno, user, history, target in _read_rows(path):
            key = (user, tuple(history), target)
            if key in seen:
                duplicates += 1  # the same prefix row given twice (e.g. in two split files)
                continue
            seen.add(key)
            rows_read += 1
            ref = (path, lineno)
            check_token(*ref, "user_id", user)
            for item, title, _ in history + [target]:
                check_token(*ref, "item_id", item)
                title = clean_title(title)
                if not title:
                    raise ConvertError(f"item {item!r} has an empty title", *ref)
                if titles.setdefault(item, title) != title:
                    raise ConvertError(f"item {item!r} has this title, elsewhere {titles[item]!r}",
                                       *ref, value=title)
            by_user[user].append((ref, history, target))
    rows = []
    for user, user_rows in by_user.items():
        rows.extend((user, item, stamp) for item, _, stamp in _chain(user, user_rows))
    # 'auto': values above 1e11 (year 5138 in seconds) are milliseconds
    if timestamp_unit == "ms" or (timestamp_unit == "auto" and rows and max(r[2] for r in rows) > 1e11):
        rows = [(user, item, stamp / 1000) for user, item, stamp in rows]
    write_item(item_path, titles.items())
    kept = write_inter(inter_path, sort_interactions(rows))
    return folder, {"rows": rows_read + duplicates, "duplicate_rows": duplicates,
                    "users": len(by_user), "items": len(titles), "interactions": kept}
