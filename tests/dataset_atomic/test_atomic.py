import os

import pytest

from dataset_atomic import atomic
from dataset_atomic.__main__ import main
from dataset_atomic.atomic_files import ConvertError
from dataset_atomic.validate import validate
from recbole_llm2rec.errors import cli_main
from recbole_check import recbole_counts
from slices import write_slice


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def test_link_and_copy_keep_the_real_dataset_unchanged(tmp_path, capsys):
    src = os.path.join(write_slice(str(tmp_path / "shared"), "Games", 500), "Games")
    for mode, out in (("link", tmp_path / "linked"), ("copy", tmp_path / "copied")):
        argv = ["atomic", src, "--out", str(out)] + (["--copy"] if mode == "copy" else [])
        assert main(argv) == 0
        for ext in ("inter", "item"):
            placed = os.path.join(out, "Games", f"Games.{ext}")
            assert os.path.islink(placed) == (mode == "link")
            assert _read(placed) == _read(os.path.join(src, f"Games.{ext}"))
        assert main(argv) == 0  # placing again is a no-op
    out = capsys.readouterr().out
    assert "Games: 0 problem(s)" in out and "| Games | 500 |" in out


def test_refuses_to_replace_a_different_file(tmp_path):
    src = os.path.join(write_slice(str(tmp_path / "shared"), "Games", 50), "Games")
    folder = tmp_path / "out" / "Games"
    folder.mkdir(parents=True)
    (folder / "Games.item").write_text("item_id:token\ttitle:token_seq\n", encoding="utf-8")
    with pytest.raises(ConvertError, match=r"Games.item: already exists and differs"):
        atomic.place(src, str(tmp_path / "out"))
    assert (folder / "Games.item").read_text(encoding="utf-8") == "item_id:token\ttitle:token_seq\n"


def test_cli_reports_problems_and_bad_input(tmp_path, capsys):
    folder = tmp_path / "Odd"
    folder.mkdir()
    (folder / "Odd.item").write_text("item_id:token\ttitle:token_seq\ni1\tA &amp; B\n", encoding="utf-8")
    (folder / "Odd.inter").write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                                      "u1\ti1\t1\nu1\ti1\t2\n", encoding="utf-8")
    assert main(["atomic", str(folder)]) == 1
    out = capsys.readouterr().out
    assert ("Odd.item:2: field 'title' = 'A &amp; B': title has HTML entities or extra "
            "whitespace (fixable by the converters)") in out
    assert ("Odd.inter:2: field 'user_id' = 'u1': 1 of 1 users have fewer than 3 interactions"
            in out)
    with pytest.raises(SystemExit) as exit_:
        cli_main(main, "python -m dataset_atomic", ["atomic", str(tmp_path / "missing")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.inter: file not found" in err


def test_recbole_loads_a_linked_real_dataset(tmp_path):
    src = os.path.join(write_slice(str(tmp_path / "shared"), "Games", 500), "Games")
    folder = atomic.place(src, str(tmp_path / "out"))
    stats = validate(folder, "Games").stats
    assert recbole_counts(str(tmp_path / "out"), "Games") == (stats["users"], stats["items"])
