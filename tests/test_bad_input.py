"""Bad input gets the same one-line answer from the validator (`python -m dataset_atomic atomic`),
extraction (`python -m pretrain.extract`) and the runner (`run_recbole.py`): exit status 2 and
one stderr line naming the file, the line or field, and the value; never a traceback.

Each case starts from a real 30-user Games slice and breaks one thing.
"""
import glob
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import run_recbole
from dataset_atomic.__main__ import main as dataset_atomic_main
from pretrain.extract import main as extract_main
from recbole_llm2rec.errors import cli_main
from recbole_llm2rec.feat import write_feat
from recbole_llm2rec.quick_start import run
from slices import write_slice

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--epochs=1", "--show_progress=False", "--hidden_size=16", "--inner_size=32",
         "--n_layers=1", "--n_heads=1"]


@pytest.fixture
def games(tmp_path):
    """(data_path, Games folder) of a fresh 30-user slice."""
    root = write_slice(str(tmp_path / "data"), "Games", 30)
    return root, os.path.join(root, "Games")


def one_line_error(main, prog, argv, capsys):
    """Run `main(argv)` through the CLI handler; it must exit 2 with one line. Returns it."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli_main(main, prog, argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"{prog}: error: ")
    return err.strip()


def validator(folder, capsys):
    return one_line_error(dataset_atomic_main, "python -m dataset_atomic", ["atomic", folder],
                          capsys)


def extraction(root, capsys):
    argv = ["--model", "minilm", "--data_path", root, "--dataset", "Games", "--name", "x"]
    return one_line_error(extract_main, "python -m pretrain.extract", argv, capsys)


def runner(root, capsys, *extra, model="SASRec"):
    argv = [f"--model={model}", "--dataset=Games", f"--data_path={root}", *SMALL, *extra]
    return one_line_error(run_recbole.main, "run_recbole.py", argv, capsys)


def rewrite(path, edit):
    """Replace the lines of `path` by `edit(lines)` (lines keep their ends)."""
    with open(path, "rb") as fh:
        lines = fh.read().splitlines(keepends=True)
    with open(path, "wb") as fh:
        fh.writelines(edit(lines))


@pytest.mark.parametrize("case, edit, expected", [
    ("header without types", lambda lines: [b"user_id\titem_id\ttimestamp\n"] + lines[1:],
     "field 'user_id': header field has no ':type' suffix"),
    ("header and no rows", lambda lines: lines[:1], "the file has a header but no rows"),
])
def test_inter_header_problems_fail_validator_and_run_alike(games, capsys, case, edit, expected):
    root, folder = games
    inter = os.path.join(folder, "Games.inter")
    rewrite(inter, edit)
    assert f"{inter}:1: {expected}" in validator(folder, capsys)
    assert f"{inter}:1: {expected}" in runner(root, capsys)


def test_non_utf8_byte_in_item(games, capsys):
    root, folder = games
    item = os.path.join(folder, "Games.item")
    rewrite(item, lambda lines: lines[:3] + [lines[3].replace(b"\t", b"\t\xe9", 1)] + lines[4:])
    expected = f"{item}:4: value b'"
    for err in (extraction(root, capsys), runner(root, capsys)):
        assert expected in err and "not UTF-8 (byte 0xe9 at column" in err
    assert main_problems(folder, capsys)[0].startswith(expected)


def test_tab_inside_a_title(games, capsys):
    root, folder = games
    item = os.path.join(folder, "Games.item")
    token = lines_of(item)[5].split("\t")[0]
    rewrite(item, lambda lines: lines[:5] + [f"{token}\tSuper\tMario Kart\n".encode()] + lines[6:])
    expected = (f"{item}:6: value '{token}\\tSuper\\tMario Kart': expected 2 tab-separated "
                f"fields, got 3 (a tab or line break inside a value?)")
    assert expected in extraction(root, capsys)
    assert expected in runner(root, capsys)
    assert main_problems(folder, capsys)[0] == expected  # then: the .inter rows of that item


def test_non_numeric_timestamp(games, capsys):
    root, folder = games
    inter = os.path.join(folder, "Games.inter")
    rewrite(inter, lambda lines: lines[:7] + [lines[7].rsplit(b"\t", 1)[0] + b"\tsoon\n"]
            + lines[8:])
    expected = f"{inter}:8: field 'timestamp' = 'soon': not a number (a float field)"
    assert expected in runner(root, capsys)
    assert main_problems(folder, capsys) == [expected]


def test_inter_items_missing_from_item(games, capsys):
    root, folder = games
    item, inter = os.path.join(folder, "Games.item"), os.path.join(folder, "Games.inter")
    tokens = [line.split("\t")[0] for line in lines_of(item)[1:]]
    write_feat(os.path.join(folder, "Games.rand.feat"), tokens,
               np.ones((len(tokens), 4), np.float32))
    dropped = lines_of(item)[1].split("\t")[0]
    rewrite(item, lambda lines: lines[:1] + lines[2:])
    first = next(n for n, line in enumerate(lines_of(inter), start=1)
                 if line.split("\t")[1] == dropped)
    err = runner(root, capsys, "--text_emb=rand", model="TextSASRec")
    assert err.startswith(f"run_recbole.py: error: {inter}:{first}: field 'item_id' = "
                          f"{dropped!r}: 1 item(s) of this file have no row in {item}")
    assert "re-extract" not in err
    assert main_problems(folder, capsys) == [err.split("error: ", 1)[1]]


def test_users_too_short_for_leave_one_out_are_counted_in_a_warning(games, tmp_path, capsys,
                                                                     monkeypatch):
    root, folder = games
    inter = os.path.join(folder, "Games.inter")
    users = [line.split("\t")[0] for line in lines_of(inter)[1:]]
    short = users[0]
    keep = 2  # the first user keeps 2 interactions: train and test, no validation
    rewrite(inter, lambda lines: lines[:1 + keep] + lines[1 + users.count(short):])
    monkeypatch.chdir(tmp_path)  # RecBole writes log/ and saved/ in the working dir
    run("SASRec", "Games", config_dict={"data_path": root, "epochs": 1, "show_progress": False,
                                        "hidden_size": 16, "inner_size": 32, "n_layers": 1,
                                        "n_heads": 1, "checkpoint_dir": str(tmp_path)})
    log = open(glob.glob(str(tmp_path / "log" / "SASRec" / "*.log"))[0]).read()
    assert (f"{inter}:2: field 'user_id' = {short!r}: 1 of 30 users have fewer than 3 "
            f"interactions, so leave-one-out leaves them out of validation and/or test") in log
    assert "WARNING" in log.split("1 of 30 users")[0].splitlines()[-1]
    assert "1 of 30 users have fewer than 3" in main_problems(folder, capsys)[0]


def test_malformed_yaml_config_file(games, tmp_path, capsys):
    root, _ = games
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 1\nlearning_rate: [0.1\nhidden_size: 16\n")
    err = runner(root, capsys, f"--config_files={bad}")
    assert err.startswith(f"run_recbole.py: error: {bad}:3: not valid yaml")


def test_data_path_under_a_regular_file(games, capsys):
    root, _ = games
    under = os.path.join(root, "Games", "Games.inter", "sub")
    err = runner(under, capsys)
    assert err == (f"run_recbole.py: error: field 'data_path' = {under!r}: "
                   f"{os.path.join(root, 'Games', 'Games.inter')} is a file, not a folder")
    argv = ["--model=SASRec", "--dataset=ml-100k", f"--data_path={under}", *SMALL]
    assert one_line_error(run_recbole.main, "run_recbole.py", argv, capsys) == err


def test_device_cuda_without_a_gpu(games, capsys, monkeypatch):
    root, _ = games
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    err = runner(root, capsys, "--device=cuda")
    assert err.startswith("run_recbole.py: error: field 'device' = 'cuda': no CUDA GPU is visible")


@pytest.mark.parametrize("argv, expected", [
    (["run_recbole.py", "--model=SASRec", "--dataset=Games", "--data_path={root}"],
     "{item}:1: field 'item_id': header field has no ':type' suffix"),
    (["-m", "pretrain.extract", "--model", "minilm", "--data_path", "{root}", "--dataset",
      "Games", "--name", "x"], "{item}:1: field 'item_id': header field has no ':type' suffix"),
    (["-m", "dataset_atomic", "atomic", "{folder}"],
     "{item}:1: field 'item_id': header field has no ':type' suffix"),
    (["-m", "pretrain.convert_gguf", "--gguf", "{item}", "--out", "{root}/hf"],
     "{item}: not a readable GGUF file"),
])
def test_entry_points_print_one_line_as_a_process(games, argv, expected):
    root, folder = games
    item = os.path.join(folder, "Games.item")
    rewrite(item, lambda lines: [b"item_id\ttitle\n"] + lines[1:])
    fill = dict(root=root, folder=folder, item=item)
    proc = subprocess.run([sys.executable] + [a.format(**fill) for a in argv], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert expected.format(**fill) in proc.stderr


def lines_of(path):
    with open(path, encoding="utf-8", errors="replace") as fh:
        return [line.rstrip("\n") for line in fh]


def main_problems(folder, capsys):
    """The problems the validator prints for `folder` (it exits 1: the dataset has problems)."""
    capsys.readouterr()
    assert dataset_atomic_main(["atomic", folder]) == 1
    out = capsys.readouterr().out.splitlines()
    return [line for line in out if line.startswith(folder) and not line.endswith(" problem(s)")]
