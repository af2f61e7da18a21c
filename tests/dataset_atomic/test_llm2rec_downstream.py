import json
import os

import pytest

from dataset_atomic import llm2rec_downstream
from dataset_atomic.atomic_files import ConvertError
from recbole_check import recbole_counts


def _source(tmp_path, titles, lines):
    src = tmp_path / "Video_Games"
    src.mkdir()
    (src / "item_titles.json").write_text(json.dumps(titles), encoding="utf-8")
    (src / "data.txt").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(src)


def _lines(path):
    with open(path, encoding="utf-8") as fh:
        return fh.read().splitlines()


def test_each_line_becomes_a_user_and_positions_become_times(tmp_path):
    titles = {"1": "Alpha", "2": "Beta &amp; Co", "3": "  Gamma\n", "4": "never used"}
    src = _source(tmp_path, titles, ["1 2 3", "2 3 1 2", "", "3 1 2"])
    folder, counts = llm2rec_downstream.convert(src, str(tmp_path / "out"), "Games")
    assert _lines(os.path.join(folder, "Games.inter")) == [
        "user_id:token\titem_id:token\ttimestamp:float",
        "u1\t1\t0", "u1\t2\t1", "u1\t3\t2",
        "u2\t2\t0", "u2\t3\t1", "u2\t1\t2", "u2\t2\t3",
        "u4\t3\t0", "u4\t1\t1", "u4\t2\t2"]
    assert _lines(os.path.join(folder, "Games.item")) == [
        "item_id:token\ttitle:token_seq", "1\tAlpha", "2\tBeta & Co", "3\tGamma"]
    assert counts == {"users": 3, "items": 3, "interactions": 10, "titles_never_used": 1}


def test_unknown_item_and_empty_title_are_errors(tmp_path):
    src = _source(tmp_path, {"1": "Alpha", "2": "Beta"}, ["1 2", "2 9 1"])
    with pytest.raises(ConvertError, match=r"data.txt:2: value '9': item is not in .*item_titles.json"):
        llm2rec_downstream.convert(src, str(tmp_path / "out"), "Games")
    with open(os.path.join(src, "item_titles.json"), "w") as fh:
        json.dump({"1": "Alpha", "2": " ", "9": "x"}, fh)
    with pytest.raises(ConvertError, match=r"item_titles.json: value ' ': item '2' has an empty"):
        llm2rec_downstream.convert(src, str(tmp_path / "out"), "Games")
    assert not os.path.exists(tmp_path / "out" / "Games")


def test_recbole_loads_the_output(tmp_path):
    src = _source(tmp_path, {"1": "Alpha", "2": "Beta", "3": "Gamma"}, ["1 2 3", "2 3 1 2", "3 1 2"])
    folder, counts = llm2rec_downstream.convert(src, str(tmp_path / "out"), "Games")
    assert recbole_counts(str(tmp_path / "out"), "Games") == (counts["users"], counts["items"]) == (3, 3)
