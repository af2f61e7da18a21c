"""Shared core of the converters: text cleaning, ordering and atomic writing of `.inter`/`.item`."""
import html
import os
import re

from recbole_llm2rec.feat import atomic_write_text

INTER_FIELDS = ("user_id:token", "item_id:token", "timestamp:float")
ITEM_FIELDS = ("item_id:token", "title:token_seq")


class ConvertError(ValueError):
    """A source file cannot be converted; the message names the file, line and value."""


def dataset_files(out_dir, name):
    """Returns (folder, .inter path, .item path) of dataset `name` inside `out_dir`."""
    folder = os.path.join(out_dir, name)
    return folder, os.path.join(folder, f"{name}.inter"), os.path.join(folder, f"{name}.item")


def natural_key(token):
    """Sort key ordering 'u2' before 'u10' (digit runs compare as numbers)."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", token) if part]


def clean_text(text):
    """HTML entities decoded (also double-escaped ones) and all whitespace collapsed to one space."""
    text = str(text)
    for _ in range(3):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return " ".join(text.split())


def format_timestamp(seconds):
    """Unix seconds as written in `.inter`: an integer when whole, else the shortest exact float."""
    seconds = float(seconds)
    return str(int(seconds)) if seconds.is_integer() else repr(seconds)


def sort_interactions(rows):
    """(user, item, seconds) rows sorted by user (natural order) then time; ties keep input order."""
    keys = {}
    for row in rows:
        if row[0] not in keys:
            keys[row[0]] = natural_key(row[0])
    return sorted(rows, key=lambda r: (keys[r[0]], r[2]))


def check_token(path, kind, token):
    """Raise ConvertError unless `token` is a non-empty id without whitespace."""
    if not token or token != token.strip() or any(c in token for c in "\t\n\r"):
        raise ConvertError(f"{path}: {kind} {token!r} is empty or contains whitespace/tabs")


def write_inter(path, rows):
    """Write (user, item, seconds) rows, already in file order, atomically. Returns the row count."""
    count = 0

    def write(fh):
        nonlocal count
        fh.write("\t".join(INTER_FIELDS) + "\n")
        for user, item, seconds in rows:
            fh.write(f"{user}\t{item}\t{format_timestamp(seconds)}\n")
            count += 1

    atomic_write_text(path, write)
    return count


def write_item(path, items):
    """Write (item, title) pairs atomically, ordered by item token (natural order)."""
    items = sorted(items, key=lambda r: natural_key(r[0]))

    def write(fh):
        fh.write("\t".join(ITEM_FIELDS) + "\n")
        for item, title in items:
            fh.write(f"{item}\t{title}\n")

    atomic_write_text(path, write)
    return len(items)


def has_dataset(out_dir, name):
    """True when `<out_dir>/<name>/` holds both files with the expected headers (written atomically)."""
    _, inter, item = dataset_files(out_dir, name)
    for path, fields in ((inter, INTER_FIELDS), (item, ITEM_FIELDS)):
        if not os.path.isfile(path):
            return False
        with open(path, encoding="utf-8", errors="replace") as fh:
            if tuple(fh.readline().rstrip("\r\n").split("\t")) != fields:
                return False
    return True
