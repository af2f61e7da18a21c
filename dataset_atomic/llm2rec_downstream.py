"""The LLM2Rec reference downstream layout: `item_titles.json` + space-separated id sequences.

`item_titles.json` maps item ids ("1".."N") to titles; each line of the sequence file
(`data.txt` by default, which holds the train, valid and test lines) is one user's items in
time order. The layout has no users or times: line n becomes user `u<n>` and an item's
position in its line becomes its timestamp, so RecBole keeps the order.
"""
import json
import os

from dataset_atomic.atomic_files import (ConvertError, check_token, clean_title, open_source,
                                         output_files, write_inter, write_item)


def _titles(path):
    """{item id: cleaned title} from `item_titles.json`."""
    with open_source(path) as fh:
        try:
            data = json.loads(fh.read().decode("utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise ConvertError(f"not a UTF-8 JSON object ({err})", path) from None
    if not isinstance(data, dict):
        raise ConvertError(f"expected a JSON object {{item id: title}}, got {type(data).__name__}",
                           path)
    titles = {}
    for item, title in data.items():
        check_token(path, None, "item", item)
        title = clean_title(title) if isinstance(title, str) else ""
        if not title:
            raise ConvertError(f"item {item!r} has an empty or non-text title", path,
                               value=data[item])
        titles[item] = title
    return titles


def convert(source_dir, out_dir, name, sequences="data.txt", overwrite=False):
    """Convert `<source_dir>/{item_titles.json,<sequences>}`. Returns (folder, counts dict)."""
    titles_path = os.path.join(source_dir, "item_titles.json")
    seq_path = os.path.join(source_dir, sequences)
    open_source(seq_path).close()
    titles = _titles(titles_path)
    folder, inter_path, item_path = output_files(out_dir, name, overwrite)
    rows, used = [], set()
    with open_source(seq_path) as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                items = raw.decode("utf-8").split()
            except UnicodeDecodeError:
                raise ConvertError("not UTF-8", seq_path, lineno, value=raw[:80]) from None
            for item in items:
                if item not in titles:
                    raise ConvertError(f"item is not in {titles_path}", seq_path, lineno,
                                       value=item)
            used.update(items)
            rows.extend((f"u{lineno}", item, position) for position, item in enumerate(items))
    write_item(item_path, ((item, titles[item]) for item in used))
    kept = write_inter(inter_path, rows)
    return folder, {"users": len({r[0] for r in rows}), "items": len(used), "interactions": kept,
                    "titles_never_used": len(titles) - len(used)}
