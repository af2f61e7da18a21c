import os

import pytest

from dataset_atomic.atomic_files import ConvertError
from dataset_atomic.validate import format_problem, stats_table, validate

ITEM = (b"item_id:token\ttitle:token_seq\n"
        b"i1\tGood title\n"
        b"i2\t   \n"
        b"i1\tDuplicate\n"
        b"i3\tFish &amp; Chips\n"
        b"i4\t\"Quoted\" start\n"
        b"i5\tbad\ttab\n"
        b"i6\tcaf\xe9\n")
INTER = (b"user_id:token\titem_id:token\ttimestamp:float\n"
         b"u1\ti1\t10\n"
         b"u1\ti3\t5\n"
         b"u1\ti9\t20\n"
         b"u2\ti1\tabc\n"
         b"u2\ti3\t1\n"
         b"u1\ti4\t30\n"
         b"u3\ti1\t1\r\n")


def _dataset(tmp_path, item=ITEM, inter=INTER):
    folder = tmp_path / "Bad"
    folder.mkdir()
    (folder / "Bad.item").write_bytes(item)
    (folder / "Bad.inter").write_bytes(inter)
    return str(folder)


def test_every_problem_is_reported_with_file_line_and_value(tmp_path):
    report = validate(_dataset(tmp_path), "Bad")
    found = [(os.path.basename(p.path), p.line, p.field, p.value, p.fixable)
             for p in report.problems]
    assert found == [
        ("Bad.item", 3, "title", "   ", False),
        ("Bad.item", 4, "item_id", "i1", False),
        ("Bad.item", 5, "title", "Fish &amp; Chips", True),
        ("Bad.item", 6, "title", '"Quoted" start', True),
        ("Bad.item", 7, None, "i5\tbad\ttab", False),
        ("Bad.item", 8, None, b"i6\tcaf\xe9", False),
        ("Bad.inter", 4, "item_id", "i9", False),
        ("Bad.inter", 5, "timestamp", "abc", False),
        ("Bad.inter", 5, "user_id", "u2", False),
        ("Bad.inter", 7, "user_id", "u1", False),
        ("Bad.inter", 8, None, "u3\ti1\t1\r", False),
    ]
    messages = [format_problem(p) for p in report.problems]
    assert messages[1].endswith("Bad.item:4: field 'item_id' = 'i1': duplicate item row (first "
                                "on line 2)")
    assert "expected 2 tab-separated fields, got 3" in messages[4]
    assert "not UTF-8 (byte 0xe9 at column 7)" in messages[5]
    assert "1 item(s) of this file have no row in " in messages[6]
    assert "e.g. 'i9' (line 4)" in messages[6]
    assert messages[7].endswith("Bad.inter:5: field 'timestamp' = 'abc': not a number (a float "
                                "field)")
    assert "2 of 3 users have fewer than 3 interactions" in messages[8]
    assert "'u2' (2 on line 5), 'u3' (1 on line 8)" in messages[8]
    assert "not contiguous (also on line 2)" in messages[9]
    assert "carriage return" in messages[10]
    # rows out of time order: RecBole sorts them, so a warning (docs/datasets.md)
    assert [format_problem(w).split("Bad.inter:")[1] for w in report.warnings] == [
        "3: field 'timestamp' = '5': 1 user(s) have rows out of time order: RecBole sorts each "
        "user's rows by time before it splits"]
    assert report.stats["users"] == 3 and report.stats["interactions"] == 7


def test_clean_real_dataset_has_no_problems_and_paper_style_stats(tmp_path):
    from slices import write_slice
    data = write_slice(str(tmp_path), "Games", 300)
    report = validate(os.path.join(data, "Games"), "Games")
    assert report.problems == []
    assert report.stats["users"] == 300
    table = stats_table([("Games", report.stats)])
    assert table.splitlines()[0].startswith("| dataset | #users | #items | #interactions")
    assert table.splitlines()[2].startswith("| Games | 300 | ")


def test_missing_header_field_is_an_error(tmp_path):
    folder = _dataset(tmp_path, item=b"item_id:token\tname:token_seq\ni1\tx\n")
    with pytest.raises(ConvertError, match=r"Bad.item: no 'title' column \(header fields: \['item_id', 'name'\]\)"):
        validate(folder, "Bad")


def test_a_quote_running_past_a_tab_is_a_problem(tmp_path):
    """Stock RecBole (CSV quoting) would read `"Super<TAB>Mario"` as one title and the plugin's
    runs as two columns: the reader refuses the line, whatever its number of fields."""
    item = (b"item_id:token\ttitle:token_seq\tyear:token\n"
            b"i1\tGood title\t2001\n"
            b"i2\t\"Super\tMario\"\t2002\n"
            b"i3\t\"Super\tMario\n"
            b"i4\t\"Closed\" quote\t2004\n")
    inter = b"user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\nu1\ti4\t2\nu1\ti1\t3\n"
    report = validate(_dataset(tmp_path, item=item, inter=inter), "Bad")
    quoted = [(p.line, p.field, p.value) for p in report.problems
              if "has no closing quote before the next tab" in str(p)]
    assert quoted == [(3, "title", '"Super'), (4, "title", '"Super')]
    assert "starts with '\"' and has no closing quote before the next tab: pandas' CSV quoting " \
           "(stock RecBole) reads the tab as part of the value" in str(report.problems[1])
