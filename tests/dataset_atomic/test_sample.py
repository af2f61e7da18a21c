import os

import pytest

from dataset_atomic.__main__ import main
from dataset_atomic.atomic_files import ConvertError
from dataset_atomic.sample import convert
from slices import write_slice


def _rows(path):
    with open(path, encoding="utf-8") as fh:
        return fh.readlines()


def test_sample_keeps_whole_users_and_only_their_items(tmp_path, capsys):
    src = os.path.join(write_slice(str(tmp_path / "shared"), "Games", 300), "Games")
    assert main(["sample", src, "--users", "40", "--seed", "3", "--name", "G40",
                 "--out", str(tmp_path / "out")]) == 0
    assert "| G40 | 40 |" in capsys.readouterr().out
    src_inter, inter = _rows(f"{src}/Games.inter"), _rows(tmp_path / "out/G40/G40.inter")
    users = {line.split("\t")[0] for line in inter[1:]}
    assert len(users) == 40 and inter[0] == src_inter[0]
    # every interaction of a chosen user, in the source order, and nothing else
    assert inter[1:] == [line for line in src_inter[1:] if line.split("\t")[0] in users]
    items = {line.split("\t")[1] for line in inter[1:]}
    item_rows = _rows(tmp_path / "out/G40/G40.item")
    assert {line.split("\t")[0] for line in item_rows[1:]} == items
    assert set(item_rows[1:]) <= set(_rows(f"{src}/Games.item"))
    # the same seed picks the same users; another seed other users
    convert(src, str(tmp_path / "again"), "G40", 40, seed=3)
    assert _rows(tmp_path / "again/G40/G40.inter") == inter
    convert(src, str(tmp_path / "other"), "G40", 40, seed=4)
    assert _rows(tmp_path / "other/G40/G40.inter") != inter


def test_sample_bad_input_leaves_existing_files(tmp_path):
    src = os.path.join(write_slice(str(tmp_path / "shared"), "Games", 20), "Games")
    with pytest.raises(ConvertError, match=r"Games.inter: field 'users' = 21: must be between 1 and 20"):
        convert(src, str(tmp_path / "out"), "G", 21)
    convert(src, str(tmp_path / "out"), "G", 5)
    before = _rows(tmp_path / "out/G/G.inter")
    with pytest.raises(ConvertError, match="already exist; pass --overwrite"):
        convert(src, str(tmp_path / "out"), "G", 6)
    assert _rows(tmp_path / "out/G/G.inter") == before
    with pytest.raises(ConvertError, match=r"missing/missing.inter: file not found"):
        convert(str(tmp_path / "missing"), str(tmp_path / "out"), "H", 5)


def test_sample_names_the_bad_header_or_line(tmp_path):
    folder = tmp_path / "Odd"
    folder.mkdir()
    (folder / "Odd.item").write_text("item_id:token\ttitle:token_seq\ni1\tA\n", encoding="utf-8")
    inter = folder / "Odd.inter"
    inter.write_text("user:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\n", encoding="utf-8")
    with pytest.raises(ConvertError, match=r"Odd.inter: no 'user_id' column \(header fields: \['user', 'item_id'"):
        convert(str(folder), str(tmp_path / "out"), "O", 1)
    inter.write_text("user_id:token\titem_id:token\ttimestamp:float\nu1\ti1\t1\nu2\n",
                     encoding="utf-8")
    with pytest.raises(ConvertError, match=r"Odd.inter:3: value 'u2': expected 3 tab-separated fields, got 1"):
        convert(str(folder), str(tmp_path / "out"), "O", 1)
    inter.write_text("", encoding="utf-8")
    with pytest.raises(ConvertError, match=r"Odd.inter:1: empty file, expected a RecBole atomic header"):
        convert(str(folder), str(tmp_path / "out"), "O", 1)
    assert not (tmp_path / "out").exists()  # nothing written for bad input
