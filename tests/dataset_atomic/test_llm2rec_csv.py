import csv
import gzip
import os

import pytest

from dataset_atomic import llm2rec_csv
from dataset_atomic.atomic_files import ConvertError
from recbole_check import recbole_counts
from slices import write_slice

COLUMNS = ["user_id", "item_asins", "item_asin", "history_item_id", "item_id",
           "history_item_title", "item_title", "history_rating", "rating",
           "history_timestamp", "timestamp"]
TITLES = {"A": "Alpha &amp; Omega", "B": 'Beta "Two"', "C": '"Gamma" Ray', "D": "Delta\tforce",
          "E": "Echo"}


def _prefix_rows(user, seq, ids=None):
    """DecodingMatters rows for one user: (history <= 10 previous items, target) per position."""
    rows = []
    for i in range(1, len(seq)):
        hist = seq[max(i - 10, 0):i]
        rows.append([user, [f"ASIN_{a}" for a, _ in hist], f"ASIN_{seq[i][0]}",
                     [ids[a] if ids else 0 for a, _ in hist], ids[seq[i][0]] if ids else 0,
                     [TITLES.get(a, a) for a, _ in hist], TITLES.get(seq[i][0], seq[i][0]),
                     [5.0] * len(hist), 5.0, [t for _, t in hist], seq[i][1]])
    return rows


def _write_csv(path, rows):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def _lines(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read().splitlines()


def test_rebuilds_sequences_from_split_files(tmp_path):
    u1 = _prefix_rows("U1", [("A", 100), ("B", 200), ("C", 200), ("D", 300)])
    u2 = _prefix_rows("U2", [("C", 50), ("A", 60), ("E", 70)])
    train = _write_csv(str(tmp_path / "train.csv.gz"), [u2[0], u1[1], u2[1], u1[0]])
    valid = _write_csv(str(tmp_path / "valid.csv"), [u1[2], u1[2]])  # the same row twice
    folder, counts = llm2rec_csv.convert([train, valid], str(tmp_path / "out"), "Mini")
    assert _lines(os.path.join(folder, "Mini.inter")) == [
        "user_id:token\titem_id:token\ttimestamp:float",
        "U1\tASIN_A\t100", "U1\tASIN_B\t200", "U1\tASIN_C\t200", "U1\tASIN_D\t300",
        "U2\tASIN_C\t50", "U2\tASIN_A\t60", "U2\tASIN_E\t70"]
    assert _lines(os.path.join(folder, "Mini.item")) == [
        "item_id:token\ttitle:token_seq", "ASIN_A\tAlpha & Omega", 'ASIN_B\tBeta "Two"',
        "ASIN_C\t\u201cGamma\u201d Ray", "ASIN_D\tDelta force", "ASIN_E\tEcho"]
    assert counts == {"rows": 6, "duplicate_rows": 1, "users": 2, "items": 5, "interactions": 7}


def test_errors_name_file_and_line(tmp_path):
    rows = _prefix_rows("U1", [("A", 100), ("B", 200), ("C", 300)])
    broken = [list(r) for r in rows]
    broken[1][5] = "['Alpha &amp; Omega', 'Beta"  # malformed list literal
    path = _write_csv(str(tmp_path / "bad.csv"), broken)
    with pytest.raises(ConvertError, match=r"bad.csv:3: field 'history_item_title' = .*: not a list"):
        llm2rec_csv.convert([path], str(tmp_path / "out"), "Bad")
    missing = [list(r) for r in rows]
    missing[0][6] = "  "
    path = _write_csv(str(tmp_path / "notitle.csv"), missing)
    with pytest.raises(ConvertError, match=r"notitle.csv:2: item 'ASIN_B' has an empty title"):
        llm2rec_csv.convert([path], str(tmp_path / "out"), "Bad")
    path = _write_csv(str(tmp_path / "train_only.csv"), rows[1:])
    with pytest.raises(ConvertError, match=r"train_only.csv:2: field 'user_id' = 'U1': .* all split files"):
        llm2rec_csv.convert([path], str(tmp_path / "out"), "Bad")


def test_real_dataset_round_trips_unchanged(tmp_path):
    """Games slice -> DecodingMatters CSV split 80/10/10 by time -> atomic: identical files."""
    data = write_slice(str(tmp_path / "src"), "Games", 500)
    src = os.path.join(data, "Games")
    inter, item = _lines(os.path.join(src, "Games.inter")), _lines(os.path.join(src, "Games.item"))
    TITLES.clear()
    TITLES.update(line.split("\t") for line in item[1:])
    seqs = {}
    for line in inter[1:]:
        user, it, ts = line.split("\t")
        seqs.setdefault(user, []).append((it, int(ts)))
    ids = {t: i for i, t in enumerate(TITLES)}
    rows = sorted((r for user, seq in seqs.items() for r in _prefix_rows(user, seq, ids)),
                  key=lambda r: r[-1])
    n = len(rows)
    paths = [_write_csv(str(tmp_path / f"{split}.csv"), part) for split, part in
             (("train", rows[:int(n * .8)]), ("valid", rows[int(n * .8):int(n * .9)]),
              ("test", rows[int(n * .9):]))]
    folder, counts = llm2rec_csv.convert(paths, str(tmp_path / "out"), "Games")
    assert counts["users"] == 500 and counts["rows"] == n
    assert _lines(os.path.join(folder, "Games.inter")) == [
        "\t".join(["user_id:token", "item_id:token", "timestamp:float"])] + [
        "\t".join(line.split("\t")[:1] + ["ASIN_" + line.split("\t")[1]] + line.split("\t")[2:])
        for line in inter[1:]]
    assert _lines(os.path.join(folder, "Games.item"))[1:] == [
        "ASIN_" + line for line in item[1:]]


def test_recbole_loads_the_output(tmp_path):
    u1 = _prefix_rows("U1", [("A", 100), ("B", 200), ("C", 200), ("D", 300)])
    u2 = _prefix_rows("U2", [("C", 50), ("A", 60), ("E", 70)])
    path = _write_csv(str(tmp_path / "all.csv"), u1 + u2)
    folder, counts = llm2rec_csv.convert([path], str(tmp_path / "out"), "Mini")
    assert recbole_counts(str(tmp_path / "out"), "Mini") == (counts["users"], counts["items"]) == (2, 5)


def test_millisecond_timestamps_become_seconds(tmp_path):
    rows = _prefix_rows("U1", [("A", 1600000000000), ("B", 1600000000500), ("C", 1600000002000)])
    path = _write_csv(str(tmp_path / "ms.csv"), rows)
    folder, _ = llm2rec_csv.convert([path], str(tmp_path / "out"), "Ms")
    assert _lines(os.path.join(folder, "Ms.inter"))[1:] == [
        "U1\tASIN_A\t1600000000", "U1\tASIN_B\t1600000000.5", "U1\tASIN_C\t1600000002"]
    rows[1][-1] = "soon"
    path = _write_csv(str(tmp_path / "bad_ms.csv"), rows)
    with pytest.raises(ConvertError, match=r"bad_ms.csv:3: field 'timestamp' = 'soon': not a number"):
        llm2rec_csv.convert([path], str(tmp_path / "out"), "Bad")
