"""What RecBole accepts in a `.inter` file but that changes what leave-one-out trains on or tests
(docs/datasets.md, "What RecBole accepts but changes"): the validator and the runner's pre-flight
check report each case with the same line (count and first example), an error or a warning.

Each case starts from a real 30-user Games slice and changes one thing. In the slice, `u100`
(lines 2-6) has its last three rows on one day; `u102` (lines 7-16) and `u103` (lines 17-23)
have distinct days, in order.
"""
import collections
import os

import pytest
from recbole.data import create_dataset, data_preparation

from dataset_atomic.validate import Report, validate
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.quick_start import build_config, check_data
from slices import write_slice

MS = 1000


@pytest.fixture
def games(tmp_path):
    """(data_path, the slice's .inter lines as text, keeping their line ends)."""
    root = write_slice(str(tmp_path / "data"), "Games", 30)
    return root, lines(root)


def lines(root):
    with open(inter_path(root), encoding="utf-8", newline="") as fh:
        return fh.read().splitlines(keepends=True)


def inter_path(root):
    return os.path.join(root, "Games", "Games.inter")


def write(root, rows):
    with open(inter_path(root), "w", encoding="utf-8", newline="") as fh:
        fh.writelines(rows)


def retime(row, stamp):
    user, item, _ = row.rstrip("\n").split("\t")
    return f"{user}\t{item}\t{stamp}\n"


def rename(row, user):
    return user + row[row.index("\t"):]


def both(root):
    """What the validator and the runner's check say: (validator errors, validator warnings,
    runner error or None, runner warnings), all as strings."""
    try:
        report = validate(os.path.join(root, "Games"), "Games")
    except InputError as err:  # a bad header stops the validator too
        report = Report([err], {}, [])
    config, _ = build_config("SASRec", "Games", config_dict={"data_path": root})
    try:
        runner_error, runner_warnings = None, check_data(config)
    except InputError as err:
        runner_error, runner_warnings = str(err), []
    return ([str(p) for p in report.problems], [str(w) for w in report.warnings], runner_error,
            runner_warnings)


def assert_error(root, expected):
    problems, _, runner_error, _ = both(root)
    assert runner_error == f"{inter_path(root)}:{expected}"
    assert runner_error in problems


def assert_warning(root, expected):
    _, warnings, runner_error, runner_warnings = both(root)
    assert runner_error is None
    assert f"{inter_path(root)}:{expected}" in warnings
    assert f"{inter_path(root)}:{expected}" in runner_warnings


def held_out(root):
    """RecBole's validation and test item of every user: ({user: item}, {user: item})."""
    config, _ = build_config("SASRec", "Games", config_dict={"data_path": root})
    _, valid, test = data_preparation(config, create_dataset(config))

    def targets(loader):
        data = loader._dataset
        inter = data.inter_feat
        return {data.id2token("user_id", u): data.id2token("item_id", i)
                for u, i in zip(inter["user_id"].tolist(), inter["item_id"].tolist())}

    return targets(valid), targets(test)


def test_the_clean_slice_has_only_the_warnings_of_its_ties(games):
    root, rows = games
    problems, warnings, runner_error, runner_warnings = both(root)
    assert problems == [] and runner_error is None and warnings == runner_warnings
    by_user = collections.defaultdict(list)
    for row in rows[1:]:
        user, _, stamp = row.split("\t")
        by_user[user].append(float(stamp))
    tied = sum(len(t) - len(set(t)) for t in by_user.values())
    tied_users = sum(len(t) > len(set(t)) for t in by_user.values())
    held_tied = sum(t.count(t[-1]) > 1 or t.count(t[-2]) > 1 for t in by_user.values())
    assert warnings == [
        f"{inter_path(root)}:5: field 'timestamp' = '1428710400': {tied_users} user(s) have "
        f"{tied} row(s) with the same timestamp as an earlier row of theirs: RecBole keeps tied "
        f"rows in file order (a stable sort), which decides the held-out item(s) of "
        f"{held_tied} user(s)"]


def test_recbole_orders_ties_by_file_line_and_float32_near_times_too(games):
    """What the checks claim, on RecBole itself: tied rows keep the file's order; times closer
    than float32's step keep it too, even against their values; rows out of order are sorted."""
    root, rows = games
    valid, test = held_out(root)
    assert (valid["u100"], test["u100"]) == ("i6720", "i10175")  # lines 5, 6: same day
    assert (valid["u102"], test["u102"]) == ("i15052", "i14753")
    assert (valid["u103"], test["u103"]) == ("i16782", "i16866")
    # u100: swap its tied last rows; u102: last two rows 40 s apart, the later one first;
    # u103: its last two rows swapped (days apart)
    changed = (rows[:4] + [rows[5], rows[4]] + rows[6:14]
               + [retime(rows[14], 1456185650), retime(rows[15], 1456185610)]
               + rows[16:21] + [rows[22], rows[21]] + rows[23:])
    write(root, changed)
    valid, test = held_out(root)
    assert (valid["u100"], test["u100"]) == ("i10175", "i6720")  # file order decides
    assert (valid["u102"], test["u102"]) == ("i15052", "i14753")  # file order, not time order
    assert (valid["u103"], test["u103"]) == ("i16782", "i16866")  # sorted by time


def test_an_exact_duplicate_row_is_an_error(games):
    root, rows = games
    write(root, rows[:16] + [rows[15]] + rows[16:])
    assert_error(root, "17: field 'item_id' = 'i14753': 1 row(s) repeat another row's user, "
                       "item and timestamp (this one repeats line 16): RecBole keeps both, so the "
                       "item follows itself in the history and can be both the validation and "
                       "the test item; remove the repeated lines")
    valid, test = held_out(root)
    assert valid["u102"] == test["u102"] == "i14753"


def test_a_repeat_purchase_is_a_warning(games):
    root, rows = games
    write(root, rows[:16] + [retime(rows[6], 1456272000)] + rows[16:])
    assert_warning(root, "17: field 'item_id' = 'i12439': 1 row(s) repeat an item the user had "
                         "before, at another time (repeat purchases): RecBole keeps each, so 1 "
                         "held-out item(s) are already in their user's history; set "
                         "rm_dup_inter: first to keep only each pair's first")


def test_times_closer_than_float32_out_of_file_order_are_an_error(games):
    root, rows = games
    write(root, rows[:14] + [retime(rows[14], 1456185650), retime(rows[15], 1456185610)]
          + rows[16:])
    assert_error(root, "15: field 'timestamp' = '1456185650': 1 user(s) get another order than "
                       "their times: RecBole keeps times as float32 (steps of 128 s around 2020 "
                       "in Unix seconds), so close times compare equal and keep the file's "
                       "order, and this row comes before line 16 (1456185610); sort each user's "
                       "rows by time")


def test_rows_out_of_time_order_are_a_warning(games):
    root, rows = games
    write(root, rows[:14] + [rows[15], rows[14]] + rows[16:])
    assert_warning(root, "16: field 'timestamp' = '1446768000': 1 user(s) have rows out of time "
                         "order: RecBole sorts each user's rows by time before it splits")


def test_milliseconds_among_seconds_are_an_error(games):
    root, rows = games
    write(root, rows[:16] + [retime(r, int(r.split("\t")[2]) * MS) for r in rows[16:23]]
          + rows[23:])
    assert_error(root, f"17: field 'timestamp' = '1446422400000': 7 of {len(rows) - 1} "
                       f"timestamps are 1e+11 or more (milliseconds, or a date far in the future) "
                       f"and the others are not (seconds): RecBole compares them as plain "
                       f"numbers, which puts every millisecond row after every second row; "
                       f"write all times in one unit")


def test_a_zero_timestamp_is_a_warning(games):
    root, rows = games
    write(root, rows[:6] + [retime(rows[6], 0)] + rows[7:])
    assert_warning(root, "7: field 'timestamp' = '0': 1 timestamp(s) are 0 or negative (1970 or "
                         "before: a placeholder for a missing date?): RecBole puts them first in "
                         "their user's history")


def test_a_timestamp_in_the_future_is_a_warning(games):
    root, rows = games
    write(root, rows[:15] + [retime(rows[15], 4102444800)] + rows[16:])  # 2100-01-01
    assert_warning(root, "16: field 'timestamp' = '4102444800': 1 timestamp(s) are later than "
                         "today (placeholders?): RecBole puts them last, so they become held-out "
                         "items")


def test_whitespace_around_an_id_is_an_error(games):
    root, rows = games
    write(root, rows[:9] + [rename(rows[9], "u102 ")] + rows[10:])
    assert_error(root, "10: field 'user_id' = 'u102 ': 1 user id(s) on 1 row(s) have whitespace "
                       "(or are empty): RecBole keeps it, so 'x ' and 'x' are two users; remove "
                       "it")


def test_an_id_pandas_reads_as_missing_is_an_error(games):
    root, rows = games
    write(root, rows[:16] + [rename(r, "null") for r in rows[16:23]] + rows[23:])
    assert_error(root, "17: field 'user_id' = 'null': 1 user id(s) on 7 row(s) read as missing "
                       "in pandas (NA, null, None, nan, ...): RecBole drops their rows; rename "
                       "them")


def test_ids_that_differ_only_in_case_are_a_warning(games):
    root, rows = games
    write(root, rows[:16] + [rename(r, "U102") for r in rows[16:23]] + rows[23:])
    assert_warning(root, "17: field 'user_id' = 'U102': 1 user id(s) differ from another only in "
                         "case (this one and 'u102' on line 7): RecBole takes them for different "
                         "users")


def test_a_rating_column_nothing_filters_on_is_a_warning(games):
    root, rows = games
    rating = ["1" if r.startswith("u102\t") else "5" for r in rows[1:]]
    write(root, [rows[0].rstrip("\n") + "\trating:float\n"]
          + [r.rstrip("\n") + f"\t{v}\n" for r, v in zip(rows[1:], rating)])
    assert_warning(root, f"7: field 'rating' = '1': 10 of {len(rows) - 1} rows have rating "
                         f"below the middle of its range (1 to 5): the run does not filter on "
                         f"'rating', so RecBole keeps them as positive interactions; drop them, "
                         f"or load the field and set val_interval")


def test_a_byte_order_mark_is_an_error(games):
    root, rows = games
    write(root, ["\ufeff" + rows[0]] + rows[1:])
    assert_error(root, "1: starts with a byte order mark (BOM), which RecBole reads as part of "
                       "the first field's name; save the file as UTF-8 without BOM")
