"""Shared core of the converters: text cleaning, ordering and atomic writing of `.inter`/`.item`."""
import gzip
import html
import os
import re
import sys

from recbole_llm2rec.atomic import atomic_write_text, is_token, read_header
from recbole_llm2rec.errors import InputError

INTER_FIELDS = ("user_id:token", "item_id:token", "timestamp:float")
ITEM_FIELDS = ("item_id:token", "title:token_seq")


class ConvertError(InputError):
    """A source file cannot be converted, or a dataset is invalid (names file, line and value)."""


def open_source(path):
    """Open a source file for reading bytes, decompressing `.gz`; a clear error if it is missing."""
    if not os.path.isfile(path):
        raise ConvertError("source file not found", path)
    return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")


class BadLines:
    """Counts skipped source lines and prints the first few as `file:line: reason: value`."""

    def __init__(self, shown=10):
        self.count, self.shown = 0, shown

    def add(self, path, lineno, reason, value):
        self.count += 1
        if self.count <= self.shown:
            text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
            text = text.rstrip("\r\n")
            print(f"skipped {path}:{lineno}: {reason}: {text[:80]!r}", file=sys.stderr)


def dataset_files(out_dir, name):
    """Returns (folder, .inter path, .item path) of dataset `name` inside `out_dir`."""
    folder = os.path.join(out_dir, name)
    return folder, os.path.join(folder, f"{name}.inter"), os.path.join(folder, f"{name}.item")


def output_files(out_dir, name, overwrite=False):
    """(folder, .inter, .item) for a new dataset; refuses to replace existing files unless asked."""
    if not name or "/" in name or os.sep in name or name.startswith("."):
        raise ConvertError("not a usable dataset name", field="name", value=name)
    folder, inter, item = dataset_files(out_dir, name)
    if not overwrite and (os.path.exists(inter) or os.path.exists(item)):
        raise ConvertError("dataset files already exist; pass --overwrite to replace them", folder)
    return folder, inter, item


def natural_key(token):
    """Sort key (a string) ordering 'u2' before 'u10': each digit run gets its length prepended.

    Being a plain string, the key also orders the lines of the external sort in `amazon2023`.
    """
    return re.sub(r"\d+", lambda m: f"{len(m.group()):02d}{m.group()}", token)


def clean_text(text):
    """HTML entities decoded (also double-escaped ones) and all whitespace collapsed to one space."""
    text = str(text)
    for _ in range(3):
        decoded = html.unescape(text)
        if decoded == text:
            break
        text = decoded
    return " ".join(text.split())


def quote_safe(text):
    """`text` with a leading ASCII double quote (and its closing one) made typographic.

    RecBole reads atomic files with pandas, which takes a field starting with '"' for a
    quoted CSV field and fails or merges lines.
    """
    if not text.startswith('"'):
        return text
    close = text.find('"', 1)
    if close < 0:
        return "\u201c" + text[1:]
    return "\u201c" + text[1:close] + "\u201d" + text[close + 1:]


def clean_title(text):
    """A title as written to `.item`: `clean_text`, then made safe for RecBole's reader."""
    return quote_safe(clean_text(text))


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


def check_token(path, line, kind, token):
    """Raise ConvertError unless `token` is a usable id (see `is_token`)."""
    if not is_token(token):
        raise ConvertError("id is empty or contains whitespace", path, line, field=kind,
                           value=token)


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


def write_item(path, items, text_fields=()):
    """Write (item, title, *texts) rows atomically, ordered by item token (natural order).

    `text_fields` names the extra text columns (written as `<name>:token_seq`).
    """
    items = sorted(items, key=lambda r: natural_key(r[0]))
    header = ITEM_FIELDS + tuple(f"{name}:token_seq" for name in text_fields)

    def write(fh):
        fh.write("\t".join(header) + "\n")
        for row in items:
            fh.write("\t".join(row) + "\n")

    atomic_write_text(path, write)
    return len(items)


def has_dataset(out_dir, name):
    """True when `<out_dir>/<name>/` holds both files with the expected headers (written atomically)."""
    _, inter, item = dataset_files(out_dir, name)
    for path, fields in ((inter, INTER_FIELDS), (item, ITEM_FIELDS)):
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as fh:
            try:
                header = read_header(path, fh.readline())
            except InputError:
                return False
        if tuple(f"{n}:{t}" for n, t in zip(header.names, header.types)) != fields:
            return False
    return True
