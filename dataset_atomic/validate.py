"""Validator and statistics of an atomic dataset folder (`<name>.inter` + `<name>.item`).

Every problem names the file, line and value. Problems marked fixable are ones the converters
repair (HTML entities, whitespace, a leading double quote); readers never repair them silently.
"""
import collections
import os

from dataset_atomic.atomic_files import ConvertError, clean_text, quote_safe
from recbole_llm2rec.atomic import (PANDAS_NA, atomic_rows, is_token, missing_items_error,
                                    short_users_warning)
from recbole_llm2rec.inter_checks import InterChecks

Report = collections.namedtuple("Report", "problems stats warnings")
Report.__doc__ = """What `validate` found: `problems` (errors; the dataset needs fixing), `stats`,
and `warnings` (properties RecBole accepts but that change what leave-one-out uses)."""


class Problem(ConvertError):
    """One problem of a dataset (`path`, `line`, `field`, `value`); `fixable` ones are repaired
    by the converters."""
    fixable = False


def format_problem(p):
    """One line `file:line: field = value: message`, as every entry point prints bad input."""
    return str(p)


def _add(problems, message, path, line, value, field=None, fixable=False):
    problem = Problem(message + (" (fixable by the converters)" if fixable else ""), path, line,
                      field=field, value=value)
    problem.fixable = fixable
    problems.append(problem)


def _check_token(path, lineno, field, token, problems):
    if not is_token(token):
        _add(problems, "id has spaces", path, lineno, token, field)
    elif token in PANDAS_NA:
        _add(problems, "id reads as missing in pandas", path, lineno, token, field)


def validate(folder, name, title_field="title", min_user_inters=3):
    """Check `<folder>/<name>.{inter,item}`. Returns a Report.

    Rows are read by `recbole_llm2rec.atomic` (the reader extraction and the runner use), so
    a bad header, an empty file or one without rows raises; bad rows are reported. The `.inter`
    gets the runner's checks (`recbole_llm2rec.inter_checks.InterChecks`) for the plugin's
    protocol: time order and `split: {LS: valid_and_test}`.
    """
    inter_path = os.path.join(folder, f"{name}.inter")
    item_path = os.path.join(folder, f"{name}.item")
    for path in (inter_path, item_path):
        if not os.path.isfile(path):
            raise ConvertError("file not found", path)
    problems = []
    item_line, title_words = {}, 0
    with atomic_rows(item_path, ["item_id", title_field], Problem, problems,
                     non_empty=["item_id"]) as (_, rows):
        for row in rows:
            lineno, item, title = row.line, row.values["item_id"], row.values[title_field]
            _check_carriage_return(item_path, row, problems)
            _check_token(item_path, lineno, "item_id", item, problems)
            if item in item_line:
                _add(problems, f"duplicate item row (first on line {item_line[item]})",
                     item_path, lineno, item, "item_id")
                continue
            item_line[item] = lineno
            title_words += len(title.split())
            if not title.strip():
                _add(problems, "empty or whitespace-only title", item_path, lineno, title,
                     title_field)
            elif title in PANDAS_NA:
                _add(problems, "title reads as missing in pandas", item_path, lineno, title,
                     title_field)
            elif clean_text(title) != title:
                _add(problems, "title has HTML entities or extra whitespace", item_path, lineno,
                     title, title_field, fixable=True)
            elif quote_safe(title) != title:
                _add(problems, "title starts with '\"', which RecBole's pandas reader takes "
                     "for a quoted field", item_path, lineno, title, title_field, fixable=True)

    user_count, user_first, items_seen, missing = collections.Counter(), {}, set(), {}
    prev_user, interactions = None, 0
    needed = ["user_id", "item_id", "timestamp"]
    with atomic_rows(inter_path, needed, Problem, problems, non_empty=needed) as (header, rows):
        checks = InterChecks(inter_path, header, time="timestamp",
                             held_out=max(min_user_inters - 1, 0), error=Problem)
        for row in rows:
            lineno, user, item = row.line, row.values["user_id"], row.values["item_id"]
            interactions += 1
            checks.add(row)
            _check_carriage_return(inter_path, row, problems)
            if item not in item_line:
                missing.setdefault(item, lineno)
            items_seen.add(item)
            if user != prev_user:
                if user in user_first:
                    _add(problems, f"user's rows are not contiguous (also on line "
                         f"{user_first[user]})", inter_path, lineno, user, "user_id")
                else:
                    user_first[user] = lineno
            user_count[user] += 1
            prev_user = user
    errors, warnings = checks.findings()
    problems += errors
    if missing:
        problems.append(missing_items_error(inter_path, item_path, missing, Problem))
    short = {u: (c, user_first[u]) for u, c in user_count.items() if c < min_user_inters}
    if short:
        problems.append(short_users_warning(inter_path, short, len(user_count), min_user_inters,
                                            Problem))
    problems.sort(key=lambda p: (p.path != item_path, p.line))
    stats = {"users": len(user_count), "items": len(items_seen), "interactions": interactions,
             "avg_length": interactions / max(len(user_count), 1),
             "avg_title_words": title_words / max(len(item_line), 1)}
    return Report(problems, stats, warnings)


def _check_carriage_return(path, row, problems):
    if "\r" in row.text.rstrip("\n"):
        _add(problems, "carriage return in line", path, row.line, row.text.rstrip("\n"))


def stats_table(named_stats):
    """Markdown table of (name, stats) pairs, like the paper's Tables 1-2."""
    lines = ["| dataset | #users | #items | #interactions | avg. length | avg. title words |",
             "|---|---:|---:|---:|---:|---:|"]
    for name, s in named_stats:
        lines.append(f"| {name} | {s['users']:,} | {s['items']:,} | {s['interactions']:,} | "
                     f"{s['avg_length']:.2f} | {s['avg_title_words']:.2f} |")
    return "\n".join(lines)
