"""The one atomic-file reader and writer (`recbole_llm2rec.atomic`; named apart from
tests/dataset_atomic/test_atomic.py), on a real Games slice."""
import os

import pytest

from recbole_llm2rec.atomic import atomic_rows, atomic_write_text
from recbole_llm2rec.inter_checks import check_dataset
from recbole_llm2rec.errors import InputError
from slices import write_slice


@pytest.fixture
def games(tmp_path):
    folder = os.path.join(write_slice(str(tmp_path), "Games", 20), "Games")
    return os.path.join(folder, "Games.inter"), os.path.join(folder, "Games.item")


def test_rows_keep_their_line_numbers_and_text(games):
    inter, _ = games
    raw = open(inter, "rb").read().splitlines(keepends=True)
    with open(inter, "wb") as fh:  # a blank line and a CRLF line end, both accepted
        fh.writelines(raw[:3] + [b"\n", raw[3].replace(b"\n", b"\r\n")] + raw[4:])
    with atomic_rows(inter, ["user_id", "timestamp"]) as (header, rows):
        rows = list(rows)
    assert header.names == ["user_id", "item_id", "timestamp"]
    assert header.types == ["token", "token", "float"]
    assert [r.line for r in rows[:4]] == [2, 3, 5, 6]
    assert rows[2].text == raw[3].decode().replace("\n", "\r\n")
    assert rows[2].values["timestamp"] == raw[3].decode().split("\t")[2].strip()
    assert len(rows) == len(raw) - 1


def test_problems_are_collected_and_reading_goes_on(games):
    inter, _ = games
    raw = open(inter, "rb").read().splitlines(keepends=True)
    with open(inter, "wb") as fh:
        fh.writelines(raw[:2] + [b"u1\ti1\n", b"u1\ti\xff\tx\n"] + raw[2:])
    problems = []
    with atomic_rows(inter, problems=problems) as (_, rows):
        kept = [r.line for r in rows]
    assert [(p.line, p.field, p.value) for p in problems] == [
        (3, None, "u1\ti1"), (4, None, b"u1\ti\xff\tx"), (4, "timestamp", "x")]
    assert 3 not in kept and 4 in kept and len(kept) == len(raw)  # the bad UTF-8 row goes on
    with pytest.raises(InputError, match=r"Games.inter:3: value 'u1\\ti1': expected 3"):
        with atomic_rows(inter) as (_, rows):
            list(rows)


def test_unique_fields_name_the_line_a_value_was_first_given_on(games):
    _, item = games
    raw = open(item, "rb").read().splitlines(keepends=True)
    with open(item, "wb") as fh:  # row 2's item again as line 5
        fh.writelines(raw[:4] + [raw[1]] + raw[4:])
    token = raw[1].split(b"\t")[0].decode()
    with pytest.raises(InputError, match=rf"Games.item:5: field 'item_id' = '{token}': "
                                         r"already given on line 2"):
        with atomic_rows(item, unique=["item_id"]) as (_, rows):
            list(rows)
    problems = []
    with atomic_rows(item, problems=problems, unique=["item_id"]) as (_, rows):
        assert len(list(rows)) == len(raw)  # reported, and reading goes on
    assert [(p.line, p.field, p.value) for p in problems] == [(5, "item_id", token)]
    with atomic_rows(item) as (_, rows):  # not asked: repeats pass
        assert len(list(rows)) == len(raw)


def test_check_dataset_names_missing_items_and_counts_short_users(games):
    inter, item = games
    assert check_dataset(inter, item, need=3) == []
    lines = open(inter, encoding="utf-8").read().splitlines(keepends=True)
    user = lines[1].split("\t")[0]
    n = sum(line.startswith(user + "\t") for line in lines)
    with open(inter, "w", encoding="utf-8") as fh:
        fh.writelines(lines[:3] + lines[1 + n:] + ["u9\tnope\t5\n"])
    warnings = check_dataset(inter, None, need=3)
    assert [str(w) for w in warnings] == [
        f"{inter}:2: field 'user_id' = {user!r}: 2 of 21 users have fewer than 3 interactions, "
        f"so leave-one-out leaves them out of validation and/or test (they stay in training), "
        f"e.g. {user!r} (2 on line 2), 'u9' (1 on line {len(lines) - n + 3}); set "
        f"user_inter_num_interval: \"[3,inf)\" to drop them everywhere"]
    with pytest.raises(InputError, match=rf"Games.inter:{len(lines) - n + 3}: field 'item_id' = "
                                         rf"'nope': 1 item\(s\) of this file have no row in "):
        check_dataset(inter, item, need=3)


def test_a_write_that_fails_midway_keeps_the_existing_file(tmp_path):
    path = tmp_path / "keep.inter"
    path.write_text("user_id:token\nu1\n", encoding="utf-8")

    def write(fh):
        fh.write("user_id:token\n" + "u2\n" * 100_000)
        fh.flush()  # the new bytes are on disk in the temp file when the writer fails
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(str(path), write)
    assert path.read_text(encoding="utf-8") == "user_id:token\nu1\n"
    assert os.listdir(tmp_path) == ["keep.inter"]
