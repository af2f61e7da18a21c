"""A random subset of the users of an atomic dataset (all their interactions, only their items).

For experiments that must fit a small budget: the lines of the source files are copied
unchanged, so a sampled dataset is the source restricted to the chosen users.
"""
import os
import random

from dataset_atomic.atomic_files import ConvertError, dataset_files, output_files
from recbole_llm2rec.feat import atomic_write_text


def _lines(path):
    if not os.path.isfile(path):
        raise ConvertError(f"{path}: file not found")
    with open(path, encoding="utf-8") as fh:
        return fh.readline(), fh.readlines()


def convert(src_folder, out_dir, name, users, seed=0, overwrite=False):
    """Write `<out_dir>/<name>/` holding `users` users of `src_folder` drawn at random with
    `seed`. Returns (folder, counts dict)."""
    src_name = os.path.basename(os.path.normpath(src_folder))
    _, src_inter, src_item = dataset_files(os.path.dirname(os.path.normpath(src_folder)), src_name)
    inter_header, inter_lines = _lines(src_inter)
    item_header, item_lines = _lines(src_item)
    all_users = sorted({line.split("\t", 1)[0] for line in inter_lines})
    if not 0 < users <= len(all_users):
        raise ConvertError(f"{src_inter}: --users must be between 1 and {len(all_users)}, got {users}")
    chosen = set(random.Random(seed).sample(all_users, users))
    kept = [line for line in inter_lines if line.split("\t", 1)[0] in chosen]
    items = {line.split("\t", 2)[1] for line in kept}
    folder, inter_path, item_path = output_files(out_dir, name, overwrite)
    os.makedirs(folder, exist_ok=True)
    kept_items = [line for line in item_lines if line.split("\t", 1)[0] in items]
    atomic_write_text(item_path, lambda fh: fh.writelines([item_header] + kept_items))
    atomic_write_text(inter_path, lambda fh: fh.writelines([inter_header] + kept))
    return folder, {"users": users, "items": len(items), "interactions": len(kept),
                    "source_users": len(all_users)}
