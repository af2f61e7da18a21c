"""A random subset of the users of an atomic dataset (all their interactions, only their items).

For experiments that must fit a small budget: the lines of the source files are copied
unchanged, so a sampled dataset is the source restricted to the chosen users.
"""
import os
import random

from dataset_atomic.atomic_files import ConvertError, dataset_files, output_files
from recbole_llm2rec.atomic import atomic_rows, atomic_write_text


def _read(path, *fields):
    """(header line, data lines, the value of each of `fields` per data line) of an atomic file,
    lines as in the file; bad input raises ConvertError naming file, line and value."""
    with atomic_rows(path, fields, ConvertError, non_empty=fields) as (header, rows):
        lines, values = [], []
        for row in rows:
            lines.append(row.text)
            values.append(tuple(row.values[f] for f in fields))
    return header.text, lines, values


def convert(src_folder, out_dir, name, users, seed=0, overwrite=False):
    """Write `<out_dir>/<name>/` holding `users` users of `src_folder` drawn at random with
    `seed`. Returns (folder, counts dict)."""
    src_name = os.path.basename(os.path.normpath(src_folder))
    _, src_inter, src_item = dataset_files(os.path.dirname(os.path.normpath(src_folder)), src_name)
    inter_header, inter_lines, pairs = _read(src_inter, "user_id", "item_id")
    item_header, item_lines, item_ids = _read(src_item, "item_id")
    all_users = sorted({user for user, _ in pairs})
    if not 0 < users <= len(all_users):
        raise ConvertError(f"must be between 1 and {len(all_users)} (the users of this file)",
                           src_inter, field="users", value=users)
    chosen = set(random.Random(seed).sample(all_users, users))
    kept = [i for i, (user, _) in enumerate(pairs) if user in chosen]
    items = {pairs[i][1] for i in kept}
    folder, inter_path, item_path = output_files(out_dir, name, overwrite)
    os.makedirs(folder, exist_ok=True)
    kept_items = [line for line, (item,) in zip(item_lines, item_ids) if item in items]
    atomic_write_text(item_path, lambda fh: fh.writelines([item_header] + kept_items))
    atomic_write_text(inter_path, lambda fh: fh.writelines([inter_header] + [inter_lines[i] for i in kept]))
    return folder, {"users": users, "items": len(items), "interactions": len(kept),
                    "source_users": len(all_users)}
