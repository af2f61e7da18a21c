"""What a `.inter` file may hold that RecBole 1.2.1 accepts as it is but that silently changes
what leave-one-out (time order, `split: {LS: ...}`, full ranking) trains on or tests.

One set of checks for every reader that runs them: the runner's pre-flight check
(`check_dataset`, called by `quick_start.check_data`) and the validator
(`dataset_atomic.validate`). Each finding is one message with a count and the first example
(file, line, field, value), an error or a warning; docs/datasets.md lists them with what RecBole
does in each case.
"""
import array
import collections
import math
import time as clock

from recbole_llm2rec.atomic import (PANDAS_NA, atomic_rows, is_token, missing_items_error,
                                    short_users_warning)
from recbole_llm2rec.errors import InputError

MS_FROM = 1e11  # a timestamp at or above it is taken for milliseconds (in seconds: year 5138)
FEEDBACK_FIELDS = ("rating", "label")  # RecBole's default RATING_FIELD and LABEL_FIELD
_DAY = 86400.0
_F32_MAX = 3.4028234663852886e38


class InterChecks:
    """The checks of one `.inter` file: `add` each row (`atomic.Row`), then `findings()`.

    `user`, `item`: the id fields; `time`: the time field when the split orders by time (None:
    no time checks); `held_out`: items leave-one-out holds out per user (2 for valid_and_test,
    1 for test_only, 0 otherwise); `dedup`: RecBole's `rm_dup_inter` (set, RecBole drops repeated
    user-item pairs itself); `feedback`: fields that hold feedback nothing filters on (those of
    the header are checked); `error`: the class of the findings.
    """

    def __init__(self, path, header, user="user_id", item="item_id", time=None, held_out=0,
                 dedup=None, feedback=FEEDBACK_FIELDS, error=InputError):
        self.path, self.user, self.item, self.time = path, user, item, time
        self.held_out, self.dedup, self.error = held_out, dedup, error
        self.feedback = [f for f in feedback if f in header.names and f not in (user, item, time)]
        self.first = {user: {}, item: {}}  # field -> {id: line it is first on}
        self.id_rows = collections.Counter()  # (field, id) -> rows, for unusable ids only
        self.item_index, self.item_tokens = {}, []  # item id -> index, and back
        self.users = {}  # user -> (times, lines, item indexes), in file order
        self.ratings = {f: collections.Counter() for f in self.feedback}  # value -> rows
        self.rating_line = {f: {} for f in self.feedback}  # value -> line it is first on

    def add(self, row):
        values = row.values
        for field in (self.user, self.item):
            token, seen = values[field], self.first[field]
            if token not in seen:
                seen[token] = row.line
                if not is_token(token) or token in PANDAS_NA:
                    self.id_rows[field, token] = 0
            if self.id_rows and (field, token) in self.id_rows:
                self.id_rows[field, token] += 1
        stamp = _number(values[self.time]) if self.time else 0.0
        if stamp is not None:
            rows = self.users.get(values[self.user])
            if rows is None:
                rows = self.users[values[self.user]] = (
                    array.array("d"), array.array("l"), array.array("l"))
            rows[0].append(stamp)
            rows[1].append(row.line)
            index = self.item_index.get(values[self.item])
            if index is None:
                index = self.item_index[values[self.item]] = len(self.item_tokens)
                self.item_tokens.append(values[self.item])
            rows[2].append(index)
        for field in self.feedback:
            value = _number(values[field])
            if value is not None:
                self.ratings[field][value] += 1
                self.rating_line[field].setdefault(value, row.line)

    def findings(self):
        """(errors, warnings): lists of `error` instances, in a fixed order."""
        found = (self._id_findings() + self._user_findings() + self._case_findings()
                 + self._feedback_findings())
        return ([self.error(*f[1:]) for f in found if f[0]],
                [self.error(*f[1:]) for f in found if not f[0]])

    def _finding(self, is_error, message, line, field, value):
        return (is_error, message, self.path, line, field, value)

    def _id_findings(self):
        errors = []
        for field in (self.user, self.item):
            kind = "user" if field == self.user else "item"
            for test, what, effect in (
                    (lambda t: not is_token(t), "have whitespace (or are empty)",
                     f"RecBole keeps it, so 'x ' and 'x' are two {kind}s; remove it"),
                    (lambda t: is_token(t) and t in PANDAS_NA,
                     "read as missing in pandas (NA, null, None, nan, ...)",
                     "RecBole drops their rows; rename them")):
                bad = [(self.first[field][t], t, n) for (f, t), n in self.id_rows.items()
                       if f == field and test(t)]
                if bad:
                    line, token, _ = min(bad)
                    rows = sum(n for _, _, n in bad)
                    errors.append(self._finding(True, f"{len(bad)} {kind} id(s) on {rows} row(s) "
                                                f"{what}: {effect}", line, field, token))
        return errors

    def _user_findings(self):
        """Duplicates, repeats and (with a time field) units, order and ties, per user."""
        count = collections.Counter()  # what -> rows (or users)
        example = {}  # what -> (line, value, detail), the first in the file
        held = collections.Counter()  # what -> held-out items (or users) it touches
        now = clock.time() + _DAY

        def note(what, line, value, detail="", n=1):
            count[what] += n
            if what not in example or line < example[what][0]:
                example[what] = (line, value, detail)

        for times, lines, items in self.users.values():
            n = len(times)
            f32 = _float32(times)
            order = sorted(range(n), key=lambda k: (f32[k], k))  # RecBole's: stable, float32
            kept = set(order[n - min(self.held_out, n - 1):]) if self.held_out else set()
            pairs, firsts = {}, set()
            for k in order:
                pair = (items[k], times[k])
                if self.time and pair in pairs:
                    note("dup", lines[k], items[k], f" repeats line {pairs[pair]}")
                elif items[k] in firsts:
                    note("repeat", lines[k], items[k])
                    held["repeat"] += k in kept
                pairs.setdefault(pair, lines[k])
                firsts.add(items[k])
            if not self.time:
                continue
            unsorted = next((k for k in range(1, n) if times[k] < times[k - 1]), None)
            if unsorted is not None:
                note("unsorted", lines[unsorted], times[unsorted])
            true = sorted(range(n), key=lambda k: (times[k], k))
            if order != true:
                a, b = next((a, b) for a, b in zip(order, true) if a != b)
                note("float32", lines[a], times[a], f" comes before line {lines[b]} "
                     f"({times[b]:.17g})")
            per_time = collections.Counter(times)
            if len(per_time) < n:
                k = next(k for k in range(n) if per_time[times[k]] > 1
                         and times[k] in times[:k])
                note("tie", lines[k], times[k], n=n - len(per_time))
                count["tie users"] += 1
                held["tie"] += any(per_time[times[k]] > 1 for k in kept)
            for what, test in (("ms", lambda t: abs(t) >= MS_FROM),
                               ("s", lambda t: abs(t) < MS_FROM), ("past", lambda t: t <= 0),
                               ("future s", lambda t: t > now),
                               ("future ms", lambda t: t / 1000 > now)):
                found = [k for k in range(n) if test(times[k])]
                if found:
                    note(what, lines[found[0]], times[found[0]], n=len(found))

        def finding(what, is_error, field, message):
            line, value, detail = example[what]
            value = self.item_tokens[value] if field == self.item else format(value, ".17g")
            return self._finding(is_error, message.format(n=count[what], detail=detail,
                                                          held=held[what]), line, field, value)

        mixed = count["ms"] and count["s"]
        findings = []
        if self.dedup is None and count["dup"]:
            findings.append(finding("dup", True, self.item, (
                "{n} row(s) repeat another row's user, item and timestamp (this one{detail}): "
                "RecBole keeps both, so the item follows itself in the history and can be "
                "both the validation and the test item; remove the repeated lines")))
        if mixed:
            few = min(("ms", "s"), key=lambda what: count[what])
            findings.append(finding(few, True, self.time, (
                f"{count['ms']} of {count['ms'] + count['s']} timestamps are {MS_FROM:.0e} or "
                f"more (milliseconds, or a date far in the future) and the others are not "
                f"(seconds): RecBole compares them as plain numbers, which puts every "
                f"millisecond row after every second row; write all times in one unit")))
        if count["float32"]:
            findings.append(finding("float32", True, self.time, (
                "{n} user(s) get another order than their times: RecBole keeps times as float32 "
                "(steps of 128 s around 2020 in Unix seconds), so close times compare equal and "
                "keep the file's order, and this row{detail}; sort each user's rows by time")))
        if count["unsorted"]:
            findings.append(finding("unsorted", False, self.time, (
                "{n} user(s) have rows out of time order: RecBole sorts each user's rows by "
                "time before it splits")))
        if count["tie"]:
            by = ("in an order pandas' unstable sort picks (rm_dup_inter is set)"
                  if self.dedup is not None else "in file order (a stable sort)")
            findings.append(finding("tie", False, self.time, (
                f"{count['tie users']} user(s) have {{n}} row(s) with the same timestamp as an "
                f"earlier row of theirs: RecBole keeps tied rows {by}, which decides the "
                f"held-out item(s) of {{held}} user(s)")))
        if self.dedup is None and count["repeat"]:
            findings.append(finding("repeat", False, self.item, (
                "{n} row(s) repeat an item the user had before, at another time (repeat "
                "purchases): RecBole keeps each, so {held} held-out item(s) are already in "
                "their user's history; set rm_dup_inter: first to keep only each pair's first")))
        future = "future ms" if count["ms"] else "future s"
        for what, message in (
                ("past", "{n} timestamp(s) are 0 or negative (1970 or before: a placeholder for "
                 "a missing date?): RecBole puts them first in their user's history"),
                (future, "{n} timestamp(s) are later than today (placeholders?): RecBole puts "
                 "them last, so they become held-out items")):
            if count[what] and not mixed:
                findings.append(finding(what, False, self.time, message))
        return findings

    def _case_findings(self):
        findings = []
        for field in (self.user, self.item):
            kind = "user" if field == self.user else "item"
            lower = collections.defaultdict(list)
            for token, line in self.first[field].items():
                lower[token.lower()].append((line, token))
            clashes = [sorted(v) for v in lower.values() if len(v) > 1]
            if clashes:
                first, (line, token) = min((c[0], c[1]) for c in clashes)
                findings.append(self._finding(
                    False, f"{len(clashes)} {kind} id(s) differ from another only in case "
                    f"(this one and {first[1]!r} on line {first[0]}): RecBole takes them for "
                    f"different {kind}s", line, field, token))
        return findings

    def _feedback_findings(self):
        findings = []
        for field in self.feedback:
            counts = self.ratings[field]
            if len(counts) < 2:
                continue
            low, high = min(counts), max(counts)
            negative = [v for v in counts if v < (low + high) / 2]
            rows = sum(counts[v] for v in negative)
            value = min(negative, key=lambda v: self.rating_line[field][v])
            findings.append(self._finding(
                False, f"{rows} of {sum(counts.values())} rows have {field} below the middle of "
                f"its range ({low:g} to {high:g}): the run does not filter on {field!r}, so "
                f"RecBole keeps them as positive interactions; drop them, or load the field "
                f"and set val_interval", self.rating_line[field][value], field,
                format(value, ".17g")))
        return findings


def _float32(values):
    """`values` as float32 (RecBole keeps float fields as float32 tensors; too large: inf)."""
    if all(abs(v) <= _F32_MAX for v in values):
        return array.array("f", values)
    return array.array("f", [v if abs(v) <= _F32_MAX else math.copysign(math.inf, v)
                             for v in values])


def _number(text):
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def check_dataset(inter_path, item_path=None, user="user_id", item="item_id", time=None,
                  need=3, error=InputError, sep="\t", dedup=None, feedback=FEEDBACK_FIELDS):
    """Check a dataset's `.inter` (and its `.item`, if given) the way RecBole will use them.

    `time`: the time field when the split orders by time; `need`: the interactions a user
    needs for leave-one-out (`atomic.leave_one_out_need`; 0: another split); `dedup`: RecBole's
    `rm_dup_inter`; `feedback`: rating/label fields nothing filters on. Raises `error` for the
    first bad row, for `.inter` items without a `.item` row and for the first error of
    `InterChecks`. Returns a list of warnings (`error` instances, not raised): those of
    `InterChecks`, and users with fewer than `need` interactions.
    """
    known = None
    if item_path is not None:
        with atomic_rows(item_path, [item], error, sep=sep, non_empty=[item]) as (_, rows):
            known = {row.values[item] for row in rows}
    counts, missing, first = collections.Counter(), {}, {}
    required = [user, item] + ([time] if time else [])
    with atomic_rows(inter_path, required, error, sep=sep, non_empty=required) as (header, rows):
        checks = InterChecks(inter_path, header, user, item, time, max(need - 1, 0), dedup,
                             feedback, error)
        for row in rows:
            u, i = row.values[user], row.values[item]
            counts[u] += 1
            first.setdefault(u, row.line)
            checks.add(row)
            if known is not None and i not in known and i not in missing:
                missing[i] = row.line
    if missing:
        raise missing_items_error(inter_path, item_path, missing, error, item)
    errors, warnings = checks.findings()
    if errors:
        raise errors[0]
    short = {u: (c, first[u]) for u, c in counts.items() if c < need}
    if short:
        warnings.append(short_users_warning(inter_path, short, len(counts), need, error, user))
    return warnings
