"""Validator and statistics of an atomic dataset folder (`<name>.inter` + `<name>.item`).

Every problem names the file, line and value. Problems marked fixable are ones the converters
repair (HTML entities, whitespace, a leading double quote); readers never repair them silently.
"""
import collections
import math
import os

from dataset_atomic.atomic_files import ConvertError, clean_text, is_token, quote_safe

# Strings pandas reads as NaN even with dtype=str (RecBole loads atomic files with pandas).
PANDAS_NA = {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND",
             "1.#QNAN", "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"}

Problem = collections.namedtuple("Problem", "path line message value fixable")
Report = collections.namedtuple("Report", "problems stats")


def format_problem(p):
    """One line `file:line: message: value` (value shortened)."""
    value = p.value if len(p.value) <= 80 else p.value[:77] + "..."
    return f"{p.path}:{p.line}: {p.message}{' (fixable)' if p.fixable else ''}: {value!r}"


def _lines(path, problems):
    """Yield (line number, text without the line end); records undecodable lines as problems."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            raw = raw[:-1] if raw.endswith(b"\n") else raw
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                bad = raw[max(err.start - 10, 0):err.end + 10]
                problems.append(Problem(path, lineno, "non-UTF-8 bytes", repr(bad), False))
                line = raw.decode("utf-8", errors="replace")
            if "\r" in line:
                problems.append(Problem(path, lineno, "carriage return in line", line, False))
                line = line.replace("\r", "")
            yield lineno, line


def _rows(path, required, problems):
    """Yield (line number, {field: value}) for rows with the header's number of fields."""
    lines = _lines(path, problems)
    try:
        _, header = next(lines)
    except StopIteration:
        raise ConvertError(f"{path}: empty file, expected a RecBole atomic header") from None
    names = [col.split(":", 1)[0] for col in header.split("\t")]
    missing = [f for f in required if f not in names]
    if missing:
        raise ConvertError(f"{path}:1: header lacks fields {missing}: {header!r}")
    for lineno, line in lines:
        if not line:
            continue
        cols = line.split("\t")
        if len(cols) != len(names):
            problems.append(Problem(path, lineno, f"expected {len(names)} tab-separated fields, "
                                    f"got {len(cols)} (tab or newline inside a field?)", line, False))
            continue
        yield lineno, dict(zip(names, cols))


def _check_token(path, lineno, kind, token, problems):
    if not is_token(token):
        problems.append(Problem(path, lineno, f"{kind} id is empty or has spaces", token, False))
    elif token in PANDAS_NA:
        problems.append(Problem(path, lineno, f"{kind} id reads as missing in pandas", token, False))


def validate(folder, name, title_field="title", min_user_inters=3):
    """Check `<folder>/<name>.{inter,item}`. Returns Report(problems list, stats dict)."""
    inter_path = os.path.join(folder, f"{name}.inter")
    item_path = os.path.join(folder, f"{name}.item")
    for path in (inter_path, item_path):
        if not os.path.isfile(path):
            raise ConvertError(f"{path}: file not found")
    problems = []
    item_line, title_words = {}, 0
    for lineno, row in _rows(item_path, ["item_id", title_field], problems):
        item, title = row["item_id"], row[title_field]
        _check_token(item_path, lineno, "item", item, problems)
        if item in item_line:
            problems.append(Problem(item_path, lineno, f"duplicate item row (first on line "
                                    f"{item_line[item]})", item, False))
            continue
        item_line[item] = lineno
        title_words += len(title.split())
        if not title.strip():
            problems.append(Problem(item_path, lineno, "empty or whitespace-only title", title, False))
        elif title in PANDAS_NA:
            problems.append(Problem(item_path, lineno, "title reads as missing in pandas", title, False))
        elif clean_text(title) != title:
            problems.append(Problem(item_path, lineno, "title has HTML entities or extra whitespace",
                                    title, True))
        elif quote_safe(title) != title:
            problems.append(Problem(item_path, lineno, "title starts with '\"', which RecBole's "
                                    "pandas reader takes for a quoted field", title, True))

    user_count, user_first, items_seen = collections.Counter(), {}, set()
    prev_user, prev_time, interactions = None, None, 0
    for lineno, row in _rows(inter_path, ["user_id", "item_id", "timestamp"], problems):
        user, item, stamp = row["user_id"], row["item_id"], row["timestamp"]
        interactions += 1
        _check_token(inter_path, lineno, "user", user, problems)
        if item not in item_line:
            problems.append(Problem(inter_path, lineno, f"item missing from {os.path.basename(item_path)}",
                                    item, False))
        items_seen.add(item)
        try:
            seconds = float(stamp)
            if not math.isfinite(seconds):
                raise ValueError(stamp)
        except ValueError:
            problems.append(Problem(inter_path, lineno, "non-numeric timestamp", stamp, False))
            seconds = None
        if user != prev_user:
            if user in user_first:
                problems.append(Problem(inter_path, lineno, f"user's rows are not contiguous (also on "
                                        f"line {user_first[user]})", user, False))
            else:
                user_first[user] = lineno
            prev_time = None
        elif seconds is not None and prev_time is not None and seconds < prev_time:
            problems.append(Problem(inter_path, lineno, "timestamp earlier than the user's previous "
                                    "row (unsorted)", stamp, False))
        user_count[user] += 1
        prev_user = user
        if seconds is not None:
            prev_time = seconds
    for user, count in user_count.items():
        if count < min_user_inters:
            problems.append(Problem(inter_path, user_first[user], f"user has {count} interaction(s); "
                                    f"leave-one-out needs {min_user_inters}", user, False))
    problems.sort(key=lambda p: (p.path != item_path, p.line))
    stats = {"users": len(user_count), "items": len(items_seen), "interactions": interactions,
             "avg_length": interactions / max(len(user_count), 1),
             "avg_title_words": title_words / max(len(item_line), 1)}
    return Report(problems, stats)


def stats_table(named_stats):
    """Markdown table of (name, stats) pairs, like the paper's Tables 1-2."""
    lines = ["| dataset | #users | #items | #interactions | avg. length | avg. title words |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in named_stats:
        lines.append(f"| {name} | {s['users']:,} | {s['items']:,} | {s['interactions']:,} | "
                     f"{s['avg_length']:.2f} | {s['avg_title_words']:.2f} |")
    return "\n".join(lines)
