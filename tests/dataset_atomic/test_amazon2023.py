import gzip
import json
import os

import pytest

from dataset_atomic import amazon2023
from dataset_atomic.atomic_files import ConvertError
from dataset_atomic.validate import validate
from recbole_check import recbole_counts


def _review(user, asin, ms):
    return json.dumps({"rating": 5.0, "title": "ok", "text": "fine\tgame", "images": [],
                       "asin": asin + "x", "parent_asin": asin, "user_id": user,
                       "timestamp": ms, "helpful_vote": 0, "verified_purchase": True})


def _meta(asin, title=None):
    record = {"main_category": "Video Games", "average_rating": 4.5, "rating_number": 3,
              "features": [], "description": [], "price": None, "store": "S",
              "categories": [], "details": {}, "parent_asin": asin}
    if title is not None:
        record["title"] = title
    return json.dumps(record)


REVIEWS = [
    _review("uA", "P1", 1600000000000),
    _review("uA", "P2", 1600000001500),
    _review("uA", "P1", 1600000002000),  # repeated user-item pair: dropped, earliest kept
    _review("uA", "P3", 1600000003000),  # item without title
    '{"user_id": "uB", "parent_asin"',  # malformed line
    _review("uB", "P1", 1600000005000),
    _review("uB", "P2", 1600000005000),  # same second as the line above: file order kept
    _review("uB", "P5", 1500000000000),  # before --start
    _review("uC", "P6", 1600000000000),  # P6 has one user: removed, then uC has one item
    _review("uC", "P1", 1600000009000),
    '{"user_id": "uD", "parent_asin": "P2"}',  # no timestamp
    _review("uB", "P5", 1600000006000),
    _review("uA", "P5", 1600000004000),
]
META = [
    _meta("P1", "Zelda &amp; Link"),
    _meta("P2", "  Mario\tKart\n "),
    _meta("P3"),
    _meta("P4", "   "),
    "{not json",
    _meta("P5", '"Best" Game'),
    _meta("P6", "Sonic"),
    _meta("P1", "another title for P1"),
]
EXPECTED_INTER = ["user_id:token\titem_id:token\ttimestamp:float",
                  "uA\tP1\t1600000000", "uA\tP2\t1600000001.5", "uA\tP5\t1600000004",
                  "uB\tP1\t1600000005", "uB\tP2\t1600000005", "uB\tP5\t1600000006"]
EXPECTED_ITEM = ["item_id:token\ttitle:token_seq",
                 "P1\tZelda & Link", "P2\tMario Kart", "P5\t\u201cBest\u201d Game"]
EXPECTED_COUNTS = {"review_lines": 11, "malformed_review_lines": 2, "outside_time_window": 1,
                   "reviews_of_untitled_items": 1, "duplicate_user_item_pairs": 1,
                   "items_with_title": 4, "items_without_usable_title": 2, "meta_duplicates": 1,
                   "malformed_meta_lines": 1, "users": 2, "items": 3, "interactions": 6}


def _write(path, lines):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _lines(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read().splitlines()


@pytest.fixture
def raw(tmp_path):
    return (_write(str(tmp_path / "Video_Games.jsonl.gz"), REVIEWS),
            _write(str(tmp_path / "meta_Video_Games.jsonl"), META))


def test_convert_exact_output(raw, tmp_path, capsys):
    folder, counts = amazon2023.convert(*raw, str(tmp_path / "out"), "Games", k=2,
                                        start="2018-01-01")
    assert _lines(os.path.join(folder, "Games.inter")) == EXPECTED_INTER
    assert _lines(os.path.join(folder, "Games.item")) == EXPECTED_ITEM
    assert counts == EXPECTED_COUNTS
    assert sorted(os.listdir(folder)) == ["Games.inter", "Games.item"]
    err = capsys.readouterr().err
    assert "Video_Games.jsonl.gz:5: malformed JSON" in err
    assert "meta_Video_Games.jsonl:5: malformed JSON" in err
    assert validate(folder, "Games", min_user_inters=3).problems == []


def test_options_window_duplicates_and_title_words(raw, tmp_path):
    folder, counts = amazon2023.convert(*raw, str(tmp_path / "out"), "G", k=1, end="2020-09-13",
                                        keep_duplicates=True, max_title_words=2)
    # end 2020-09-13 00:00 UTC = 1599955200 s keeps only the 2017 review
    assert _lines(os.path.join(folder, "G.inter"))[1:] == ["uB\tP5\t1500000000"]
    folder, counts = amazon2023.convert(*raw, str(tmp_path / "out"), "H", k=1,
                                        keep_duplicates=True, max_title_words=2)
    # "Zelda & Link" has 3 words: P1 goes; k=1 keeps uC's single review of P6
    assert _lines(os.path.join(folder, "H.inter"))[1:] == [
        "uA\tP2\t1600000001.5", "uA\tP5\t1600000004",
        "uB\tP5\t1500000000", "uB\tP2\t1600000005", "uB\tP5\t1600000006",
        "uC\tP6\t1600000000"]
    assert counts["items_without_usable_title"] == 3 and counts["duplicate_user_item_pairs"] == 0


def test_resumes_after_a_kill(raw, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    original, skips = amazon2023._json_lines, []

    def killed_at_line_10(path, desc, bad, skip_to=0):
        for lineno, record in original(path, desc, bad, skip_to):
            if desc == "reviews" and lineno == 10:
                raise KeyboardInterrupt
            yield lineno, record

    monkeypatch.setattr(amazon2023, "_json_lines", killed_at_line_10)
    with pytest.raises(KeyboardInterrupt):
        amazon2023.convert(*raw, out, "Games", k=2, start="2018-01-01", chunk_lines=2)
    runs = os.path.join(out, "Games", amazon2023.WORK, "runs")
    # usable lines 1 2 3 6 7 9 ...: runs end at lines 2, 6 and 9
    assert sorted(f for f in os.listdir(runs) if f.endswith(".json")) == [
        "run_000000000002.json", "run_000000000006.json", "run_000000000009.json"]

    def spy(path, desc, bad, skip_to=0):
        skips.append((desc, skip_to))
        return original(path, desc, bad, skip_to)

    monkeypatch.setattr(amazon2023, "_json_lines", spy)
    folder, counts = amazon2023.convert(*raw, out, "Games", k=2, start="2018-01-01", chunk_lines=2)
    assert skips == [("reviews", 9)]  # meta stage done, reviews resumed after line 9
    assert _lines(os.path.join(folder, "Games.inter")) == EXPECTED_INTER
    assert counts == EXPECTED_COUNTS


def test_bad_input_is_refused_before_work(raw, tmp_path):
    out = str(tmp_path / "out")
    with pytest.raises(ConvertError, match="nope.jsonl: source file not found"):
        amazon2023.convert(str(tmp_path / "nope.jsonl"), raw[1], out, "Games")
    with pytest.raises(ConvertError, match="field 'start' = '2018/01/01': not a date"):
        amazon2023.convert(*raw, out, "Games", start="2018/01/01")
    amazon2023.convert(*raw, out, "Games", k=2)
    with pytest.raises(ConvertError, match="already exist; pass --overwrite"):
        amazon2023.convert(*raw, out, "Games", k=2)


def test_recbole_loads_the_output(raw, tmp_path):
    folder, counts = amazon2023.convert(*raw, str(tmp_path / "out"), "Games", k=2, start="2018-01-01")
    assert recbole_counts(str(tmp_path / "out"), "Games") == (counts["users"], counts["items"]) == (2, 3)


def test_command_line(raw, tmp_path, capsys):
    from dataset_atomic.__main__ import main
    out = str(tmp_path / "out")
    argv = ["amazon2023", *raw, "--name", "Games", "--out", out, "--k", "2", "--start", "2018-01-01"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "conversion: duplicate_user_item_pairs=1, interactions=6," in printed
    assert "| Games | 2 | 3 | 6 | 3.00 | 2.33 |" in printed
    with pytest.raises(ConvertError, match="already exist; pass --overwrite"):
        main(argv)
    assert main(argv + ["--overwrite"]) == 0


def test_real_dataset_round_trips_unchanged(tmp_path):
    """Games slice written as Amazon 2023 files (users interleaved, ms times) converts back as is."""
    from slices import write_slice
    src = os.path.join(write_slice(str(tmp_path / "src"), "Games", 400), "Games")
    inter, item = _lines(os.path.join(src, "Games.inter")), _lines(os.path.join(src, "Games.item"))
    seqs = {}
    for line in inter[1:]:
        user, asin, ts = line.split("\t")
        seqs.setdefault(user, []).append(_review(user, asin, int(ts) * 1000))
    reviews = [seq[i] for i in range(max(map(len, seqs.values()))) for seq in seqs.values()
               if i < len(seq)]  # round-robin over users: the converter must regroup them
    meta = [_meta(asin, title) for asin, title in (line.split("\t") for line in item[1:])]
    raw = (_write(str(tmp_path / "Video_Games.jsonl.gz"), reviews),
           _write(str(tmp_path / "meta_Video_Games.jsonl.gz"), meta))
    folder, counts = amazon2023.convert(*raw, str(tmp_path / "out"), "Games", k=1, chunk_lines=1000,
                                        keep_duplicates=True)  # Games repeats some user-item pairs
    assert _lines(os.path.join(folder, "Games.inter")) == inter
    assert _lines(os.path.join(folder, "Games.item")) == item
    assert counts["users"] == 400 and counts["interactions"] == len(inter) - 1
    repeats = len(inter) - 1 - len({tuple(line.split("\t")[:2]) for line in inter[1:]})
    folder, counts = amazon2023.convert(*raw, str(tmp_path / "out"), "G2", k=1)
    assert repeats > 0 and counts["duplicate_user_item_pairs"] == repeats


def test_text_fields_become_item_columns(raw, tmp_path):
    folder, _ = amazon2023.convert(*raw, str(tmp_path / "out"), "Games", k=2, start="2018-01-01",
                                   text_fields=["store", "main_category", "price", "categories"])
    assert _lines(os.path.join(folder, "Games.item")) == [
        "item_id:token\ttitle:token_seq\tstore:token_seq\tmain_category:token_seq\t"
        "price:token_seq\tcategories:token_seq",
        "P1\tZelda & Link\tS\tVideo Games\t\t", "P2\tMario Kart\tS\tVideo Games\t\t",
        "P5\t\u201cBest\u201d Game\tS\tVideo Games\t\t"]
    assert validate(folder, "Games").problems == []
    with pytest.raises(ConvertError, match="field 'text_fields' = 'title': not a usable"):
        amazon2023.convert(*raw, str(tmp_path / "out2"), "Games", text_fields=["title"])
