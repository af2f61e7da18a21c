"""RecBole atomic files (`.inter`, `.item`, `.feat`, ...): the one row reader and the one writer.

An atomic file is UTF-8 text: a header of tab-separated `name:type` fields (`type` one of
RecBole's token, token_seq, float, float_seq), then one row per line with one value per field.
The reader checks what RecBole would otherwise trip over later, with messages that name no file
("not enough values to unpack", "Some feat is empty"): every problem is an `InputError` (or the
subclass the caller passes) naming the file, line, field and value. Standard library only:
`pretrain` and `dataset_atomic` share it with the runner.
"""
import collections
import contextlib
import hashlib
import math
import os
import tempfile

from recbole_llm2rec.errors import InputError

FIELD_TYPES = ("token", "token_seq", "float", "float_seq")
SEP = "\t"

Row = collections.namedtuple("Row", "line values text")
Row.__doc__ = """One data row: `line` number (the header is line 1), `values` {field name: text},
and `text`, the decoded line as in the file (line end included)."""


class Header(collections.namedtuple("Header", "names types text")):
    """The header line: field `names`, their `types`, and `text`, the line as in the file."""

    def type_of(self, name):
        return self.types[self.names.index(name)]


def read_header(path, raw, required=(), error=InputError, sep=SEP):
    """Parse header line `raw` (bytes) of `path`. Returns a Header.

    Every field needs a RecBole type; each of `required` must be present.
    """
    if not raw:
        raise error("empty file, expected a RecBole atomic header (name:type fields)", path, 1)
    text = _decode(path, 1, raw, error)
    if text.startswith("\ufeff"):
        raise error("starts with a byte order mark (BOM), which RecBole reads as part of the "
                    "first field's name; save the file as UTF-8 without BOM", path, 1)
    names, types = [], []
    for col in text.rstrip("\r\n").split(sep):
        name, colon, kind = col.partition(":")
        if not colon:
            raise error("header field has no ':type' suffix; RecBole headers are name:type "
                        "(e.g. user_id:token, timestamp:float)", path, 1, field=col)
        if kind not in FIELD_TYPES:
            raise error(f"unknown field type; RecBole's are {', '.join(FIELD_TYPES)}", path, 1,
                        field=name, value=kind)
        if name in names:
            raise error("field given twice in the header", path, 1, field=name)
        names.append(name)
        types.append(kind)
    for name in required:
        if name not in names:
            raise error(f"no {name!r} column (header fields: {names})", path)
    return Header(names, types, text)


@contextlib.contextmanager
def atomic_rows(path, required=(), error=InputError, problems=None, sep=SEP, non_empty=(),
                unique=()):
    """Open atomic file `path`: yields (Header, iterator of Row); blank lines are skipped.

    Fields of `required` must be in the header, those of `non_empty` non-empty in every row,
    those of `unique` never repeat a value ("already given on line N"); `float` values must be
    finite numbers (or empty). A row that is not UTF-8, has another number of fields than the
    header, has a value CSV quoting would continue past a tab (it starts with '"' and its quote
    is not closed before the tab: stock RecBole reads that line otherwise than this reader and
    the plugin's runs), or a bad value raises `error` naming file, line, field and value; with
    a `problems` list it is appended there instead and reading goes on (a row with the wrong
    number of fields or such a quote is then skipped). A file with a header but no rows raises.
    """
    if not os.path.isfile(path):
        raise error("file not found", path)
    with open(path, "rb") as fh:
        header = read_header(path, fh.readline(), required, error, sep)
        yield header, _rows(path, fh, header, non_empty, unique, error, problems, sep)


def check_rows(path, sep=SEP, error=InputError):
    """Read every row of atomic file `path`; raises `error` for the first bad one."""
    with atomic_rows(path, error=error, sep=sep) as (_, rows):
        for _ in rows:
            pass


def _rows(path, fh, header, non_empty, unique, error, problems, sep):
    def report(err):
        if problems is None:
            raise err
        problems.append(err)

    floats = [name for name, kind in zip(header.names, header.types) if kind == "float"]
    n, seen = len(header.names), 0
    first_line = {name: {} for name in unique}  # field -> value -> line it was first given on
    for lineno, raw in enumerate(fh, start=2):
        try:
            text = _decode(path, lineno, raw, error)
        except InputError as err:
            report(err)
            text = raw.decode("utf-8", errors="replace")
        line = text.rstrip("\r\n")
        if not line:
            continue
        seen += 1
        cols = line.split(sep)
        quoted = _quoted_across_sep(cols)
        if quoted is not None:
            report(error("starts with '\"' and has no closing quote before the next tab: "
                         "pandas' CSV quoting (stock RecBole) reads the tab as part of the "
                         "value, this reader and the plugin's runs as a separator; remove the "
                         "quote or the tab", path, lineno,
                         field=header.names[quoted] if quoted < n else None,
                         value=cols[quoted]))
            continue
        if len(cols) != n:
            report(error(f"expected {n} tab-separated fields, got {len(cols)} (a tab or line "
                         f"break inside a value?)", path, lineno, value=line))
            continue
        values = dict(zip(header.names, cols))
        for name in non_empty:
            if not values[name].strip():
                report(error("empty value", path, lineno, field=name, value=values[name]))
        for name in floats:
            if values[name] and not is_number(values[name]):
                report(error("not a number (a float field)", path, lineno, field=name,
                             value=values[name]))
        for name, lines in first_line.items():
            if values[name] in lines:
                report(error(f"already given on line {lines[values[name]]}", path, lineno,
                             field=name, value=values[name]))
            else:
                lines[values[name]] = lineno
        yield Row(lineno, values, text)
    if not seen:
        raise error("the file has a header but no rows", path, 1)


def _quoted_across_sep(cols):
    """Index of the first value but the last that starts with '"' and does not close the quote
    (CSV style, '""' inside), i.e. one that CSV quoting continues past the separator; else None."""
    for index, col in enumerate(cols[:-1]):
        if col.startswith('"') and not _closes_quote(col):
            return index
    return None


def _closes_quote(col):
    k = 1
    while k < len(col):
        if col[k] == '"':
            if col[k + 1:k + 2] != '"':
                return True
            k += 1
        k += 1
    return False


def _decode(path, lineno, raw, error):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"not UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1})", path,
                    lineno, value=raw.rstrip(b"\r\n")[max(err.start - 20, 0):err.end + 20]) from None


def is_token(value):
    """True for a usable id: a non-empty string without any whitespace."""
    return isinstance(value, str) and value != "" and value.split() == [value]


# Strings pandas reads as NaN even with dtype=str (RecBole loads atomic files with pandas).
PANDAS_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
             "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}


def is_number(text):
    """True when `text` is a finite float (as RecBole's float fields need)."""
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def file_sha256(path):
    """sha256 hex digest of the bytes of the file at `path`, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path, write_fn):
    """Call `write_fn(fh)` on a UTF-8 text temp file beside `path`, then rename it over `path`."""
    _atomic_write(path, write_fn, dict(mode="w", encoding="utf-8", newline="\n"))


def atomic_write_bytes(path, write_fn):
    """Call `write_fn(fh)` on a binary temp file beside `path`, then rename it over `path`."""
    _atomic_write(path, write_fn, dict(mode="wb"))


def _atomic_write(path, write_fn, open_kwargs):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, **open_kwargs) as fh:
            write_fn(fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 would make outputs private
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def leave_one_out_need(eval_args):
    """Interactions a user needs so that RecBole's leave-one-out split gives them every part
    (3 for train/valid/test, 2 for train/test). Returns 0 for other splits."""
    split = (eval_args or {}).get("split") or {}
    mode = split.get("LS") if isinstance(split, dict) else None
    return {"valid_and_test": 3, "test_only": 2}.get(mode, 0)


def missing_items_error(inter_path, item_path, missing, error=InputError, field="item_id"):
    """The error for `.inter` items without a `.item` row; `missing` is {item: first line}."""
    item, line = next(iter(missing.items()))
    shown = ", ".join(f"{i!r} (line {n})" for i, n in list(missing.items())[:5])
    return error(f"{len(missing)} item(s) of this file have no row in {item_path}, e.g. {shown}; "
                 f"add their rows (with a title) to the .item file or drop their interactions",
                 inter_path, line, field=field, value=item)


def short_users_warning(inter_path, short, n_users, need, error=InputError, field="user_id"):
    """The warning (an `error` instance, not raised) for users with fewer interactions than
    leave-one-out needs; `short` is {user: (interactions, first line)}."""
    user, (_, line) = next(iter(short.items()))
    shown = ", ".join(f"{u!r} ({c} on line {n})" for u, (c, n) in list(short.items())[:3])
    return error(f"{len(short)} of {n_users} users have fewer than {need} interactions, so "
                 f"leave-one-out leaves them out of validation and/or test (they stay in "
                 f"training), e.g. {shown}; set user_inter_num_interval: \"[{need},inf)\" to "
                 f"drop them everywhere", inter_path, line, field=field, value=user)
