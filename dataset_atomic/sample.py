"""A random subset of the users of an atomic dataset (all their interactions, only their items).

For experiments that must fit a small budget: the lines of the source files are copied
unchanged, so a sampled dataset is the source restricted to the chosen users.
"""
import os
import random

from dataset_atomic.atomic_files import ConvertError, dataset_files, open_source, output_files
from recbole_llm2rec.feat import atomic_write_text


def _read(path, *fields):
    """(header line, data lines, the value of each of `fields` per data line) of an atomic file;
    a clear error for a missing file, a header without the fields, or a line that lacks them."""
    with open_source(path) as fh:
        try:
            header, *lines = fh.read().decode("utf-8").splitlines(keepends=True)
        except ValueError:  # empty file (nothing to unpack) or non-UTF-8 bytes
            raise ConvertError(f"{path}: empty or not UTF-8, expected a RecBole atomic file") from None
    names = [col.split(":", 1)[0] for col in header.rstrip("\r\n").split("\t")]
    missing = [f for f in fields if f not in names]
    if missing:
        raise ConvertError(f"{path}:1: header lacks fields {missing}: {header.rstrip()!r}")
    at = [names.index(f) for f in fields]
    values = []
    for lineno, line in enumerate(lines, start=2):
        cols = line.rstrip("\r\n").split("\t")
        if len(cols) <= max(at):
            raise ConvertError(f"{path}:{lineno}: expected {len(names)} tab-separated fields, "
                               f"got {len(cols)}: {line.rstrip()[:80]!r}")
        values.append(tuple(cols[i] for i in at))
    return header, lines, values


def convert(src_folder, out_dir, name, users, seed=0, overwrite=False):
    """Write `<out_dir>/<name>/` holding `users` users of `src_folder` drawn at random with
    `seed`. Returns (folder, counts dict)."""
    src_name = os.path.basename(os.path.normpath(src_folder))
    _, src_inter, src_item = dataset_files(os.path.dirname(os.path.normpath(src_folder)), src_name)
    inter_header, inter_lines, pairs = _read(src_inter, "user_id", "item_id")
    item_header, item_lines, item_ids = _read(src_item, "item_id")
    all_users = sorted({user for user, _ in pairs})
    if not 0 < users <= len(all_users):
        raise ConvertError(f"{src_inter}: --users must be between 1 and {len(all_users)}, got {users}")
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
