"""Ray Tune search: space parsing, bad input, the resume manifest and a real 2-trial search on
a slice of Games (CPU)."""
import glob
import importlib.util
import json
import math
import os
import pickle
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

import slices
from recbole_llm2rec.errors import InputError, cli_main
from recbole_llm2rec.tune import TuneError, load_space, main, parse_overrides, to_tune_space
from recbole_llm2rec.tune import integrity
from recbole_llm2rec.tune.cli import PROG

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def write_space(tmp_path, text, name="space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_space_parses_the_four_distributions(tmp_path):
    path = write_space(tmp_path, "learning_rate: {loguniform: [1e-4, 1.0e-2]}\n"
                                 "hidden_dropout_prob: {uniform: [0.1, 0.5]}\n"
                                 "n_layers: {randint: [1, 3]}\n"
                                 "text_emb: {choice: [minilm, llm2rec]}\n")
    space = load_space(path)
    assert space == {"learning_rate": ("loguniform", [1e-4, 1e-2]),
                     "hidden_dropout_prob": ("uniform", [0.1, 0.5]),
                     "n_layers": ("randint", [1, 3]),
                     "text_emb": ("choice", ["minilm", "llm2rec"])}


@pytest.mark.parametrize("text, line, message", [
    ("a: {choice: [1]}\nlr: {logunifrom: [1.0e-4, 1.0e-2]}", 2,
     "field 'lr' = {'logunifrom': [0.0001, 0.01]}: unknown distribution 'logunifrom'"),
    ("lr: {loguniform: [0, 1.0e-2]}", 1,
     "lr' = {'loguniform': [0, 0.01]}: loguniform needs 0 < low"),
    ("p: {uniform: [0.5, 0.1]}", 1, "uniform needs low < high, got [0.5, 0.1]"),
    ("n: {randint: [1, 2.5]}", 1, "field 'n' = {'randint': [1, 2.5]}: bound 2.5 is not an integer"),
    ("n: {randint: [1]}", 1, "randint needs [low, high], got [1]"),
    ("h: {choice: []}", 1, "choice needs a non-empty list"),
    ("h: 64", 1, "field 'h' = 64: expected one distribution such as {choice: [a, b]}"),
    ("- a", None, "expected a mapping of config keys to distributions"),
    ("a: {choice: [1]}\nlr: {loguniform: [1, 2]", 3, "not valid yaml"),
])
def test_space_errors_name_the_file_line_key_and_value(tmp_path, text, line, message):
    path = write_space(tmp_path, text + "\n")
    with pytest.raises(TuneError, match=re.escape(message)) as err:
        load_space(path)
    assert isinstance(err.value, InputError) and err.value.line == line
    assert str(err.value).startswith(path + (f":{line}" if line else ""))


def test_randint_includes_both_bounds():
    domain = to_tune_space({"n": ("randint", [1, 3])})["n"]
    drawn = set(domain.sample(size=200, random_state=0))
    assert drawn == {1, 2, 3}


def test_overrides_are_key_value_and_leave_trial_keys_alone():
    assert parse_overrides(["--epochs=1", "--data_path=a=b"]) == {"epochs": "1",
                                                                   "data_path": "a=b"}
    with pytest.raises(InputError, match="'epochs'"):
        parse_overrides(["epochs"])
    with pytest.raises(TuneError, match="field '--checkpoint_dir' = 'x': set by the tuner"):
        parse_overrides(["--checkpoint_dir=x"])


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    """The first 200 users of the committed Games slice, as data_path/Games."""
    return slices.write_slice(str(tmp_path_factory.mktemp("data")), "Games", 200)


TINY = ["--epochs=1", "--n_layers=1", "--n_heads=4", "--inner_size=32",
        "--train_batch_size=256", "--MAX_ITEM_LIST_LENGTH=10"]


def test_unknown_key_fails_before_ray_starts(tmp_path, games, capsys):
    space = write_space(tmp_path, "learing_rate: {loguniform: [1.0e-3, 1.0e-2]}\n")
    out = tmp_path / "search"
    with pytest.raises(SystemExit) as err:
        cli_main(main, PROG, ["--model", "SASRec", "--dataset", "Games", "--space", space,
                              "--output", str(out), f"--data_path={games}", *TINY])
    assert err.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: error: {space}: field "
                                                   f"'learing_rate': not a config key of SASRec")
    assert not out.exists() or not os.listdir(out)


def test_missing_feat_names_the_file_and_the_command_that_builds_it(tmp_path, games):
    space = write_space(tmp_path, "text_emb: {choice: [minilm, llm2rec]}\n")
    with pytest.raises(TuneError) as err:
        main(["--model", "TextSASRec", "--dataset", "Games", "--space", space,
              "--output", str(tmp_path / "search"), f"--data_path={games}", *TINY])
    message = str(err.value)
    assert message.startswith(os.path.join(games, "Games", "Games.minilm.feat"))
    assert (f"python -m pretrain.extract --model minilm --dataset Games --name minilm "
            f"--data_path {games}/") in message


class Pwn:
    """Unpickling it creates the file `path` (what a planted pickle could do)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_two_trial_search_writes_sorted_table_and_usable_best_config(tmp_path, games,
                                                                     monkeypatch, capsys):
    from recbole_llm2rec.quick_start import build_config

    monkeypatch.chdir(tmp_path)  # relative paths must be made absolute for the trials
    # hidden_size 18 is not a multiple of n_heads=4: with this seed the second trial fails
    space = write_space(tmp_path, "learning_rate: {loguniform: [1.0e-3, 1.0e-2]}\n"
                                  "hidden_size: {choice: [16, 18]}\n")
    data = os.path.relpath(games, tmp_path)
    argv = ["--model", "SASRec", "--dataset", "Games", "--space", "space.yaml",
            "--num-samples", "2", "--cpus", "1", "--seed", "5", "--output", "search",
            f"--data_path={data}", *TINY]
    table = main(argv)

    saved = pd.read_csv(tmp_path / "search" / "results.csv")
    assert len(saved) == 2 and list(saved["status"]) == ["completed", "error"]
    ok, bad = saved.iloc[0], saved.iloc[1]
    assert ok["hidden_size"] == 16 and bad["hidden_size"] == 18
    assert "multiple of the number of attention heads" in bad["error"]
    assert 0 <= ok["valid/recall@20"] <= 1 and 0 <= ok["test/ndcg@10"] <= 1
    assert ok["epochs"] == 1
    assert math.isnan(bad["valid/recall@20"]) and math.isnan(bad["test/ndcg@10"])
    assert list(table["trial"]) == list(saved["trial"])
    md = (tmp_path / "search" / "results.md").read_text().splitlines()
    assert md[0].startswith("| trial | status | learning_rate | hidden_size | epochs | best_epoch | "
                            "valid/recall@20 |")
    assert len(md) == 4 and "| completed |" in md[2] and "| error |" in md[3]
    for trial in saved["trial"]:
        assert (tmp_path / "search" / "ray" / trial / "params.json").is_file()

    best = tmp_path / "search" / "best_config.yaml"
    values = yaml.safe_load(best.read_text())
    assert values["hidden_size"] == 16
    assert values["learning_rate"] == pytest.approx(ok["learning_rate"])
    config, _ = build_config("SASRec", "Games", [str(best)])
    assert config["hidden_size"] == 16 and config["epochs"] == 1 and config["n_heads"] == 4
    assert os.path.samefile(config["data_path"], os.path.join(games, "Games"))

    with pytest.raises(TuneError, match="already holds a search; pass --resume"):
        main(argv)

    # --resume unpickles Ray's state and the dataset cache: every such file was recorded
    search = tmp_path / "search"
    manifest = json.loads((search / "manifest.json").read_text())
    assert {"ray/tuner.pkl", "dataset_cache/Games-SequentialDataset.pth"} <= set(manifest)
    assert any(k.startswith("ray/experiment_state-") for k in manifest)
    integrity.verify(str(search))
    # a planted or changed pickle is refused, in one line naming it, before anything loads it
    tuner = search / "ray" / "tuner.pkl"
    original = tuner.read_bytes()
    for path in (tuner, search / "dataset_cache" / "planted.pth", search / "ray" / "x.pkl"):
        path.write_bytes(pickle.dumps(Pwn(str(tmp_path / "PWNED"))))
        with pytest.raises(SystemExit):
            cli_main(main, PROG, ["--output", "search", "--resume"])
        lines = capsys.readouterr().err.splitlines()
        assert lines[-1].startswith(f"{PROG}: error: {path}: ")
        assert "refusing to unpickle it" in lines[-1]
        assert not (tmp_path / "PWNED").exists()
        if path == tuner:
            tuner.write_bytes(original)
        else:
            path.unlink()
    integrity.verify(str(search))


def test_resume_rejects_a_damaged_search_json(tmp_path, capsys):
    out = tmp_path / "search"
    out.mkdir()
    settings = {"model": "SASRec", "dataset": "Games", "config_files": [], "overrides": {},
                "num_samples": 2, "search_alg": "random", "seed": None, "grace_period": 1,
                "reduction_factor": 2}
    (out / "search.json").write_text(json.dumps(settings))
    with pytest.raises(SystemExit):
        cli_main(main, PROG, ["--output", str(out), "--resume"])
    assert capsys.readouterr().err == (f"{PROG}: error: {out / 'search.json'}: field 'space': "
                                       f"missing (the file is damaged; start a new search)\n")
    (out / "search.json").write_text(json.dumps({**settings, "space": "s.yaml",
                                                 "num_samples": "2"}))
    with pytest.raises(TuneError, match="field 'num_samples' = '2': wrong type"):
        main(["--output", str(out), "--resume"])
    (out / "search.json").write_text('{"model": "SASRec",\n "dataset": }')
    with pytest.raises(TuneError, match="not valid JSON") as err:
        main(["--output", str(out), "--resume"])
    assert err.value.line == 2


def _finished_trials(exp_dir):
    """{trial folder: its final result} for the trials Ray's saved experiment state lists as
    finished (Ray saves that state every few seconds; a kill loses what finished since)."""
    done = {}
    for state in glob.glob(os.path.join(exp_dir, "experiment_state-*.json")):
        try:
            with open(state) as fh:
                trials = [json.loads(t) for t in json.load(fh)["checkpoints"]]
        except (ValueError, KeyError):  # being written
            continue
        for trial in trials:
            if trial["status"] == "TERMINATED":
                folder = f"trial_{trial['trial_id']}"
                with open(os.path.join(exp_dir, folder, "result.json")) as fh:
                    done[folder] = [json.loads(line) for line in fh if line.strip()][-1]
    return done


@pytest.mark.slow
def test_search_killed_with_sigkill_resumes_and_keeps_finished_trials(tmp_path, games):
    space = write_space(tmp_path, "learning_rate: {loguniform: [1.0e-3, 1.0e-2]}\n")
    out = tmp_path / "search"
    argv = ["--model", "SASRec", "--dataset", "Games", "--space", space, "--num-samples", "3",
            "--cpus", "2", "--output", str(out), f"--data_path={games}", *TINY]
    # its own session, so that kill -9 of the group also ends the Ray processes it started
    proc = subprocess.Popen([sys.executable, "-m", "recbole_llm2rec.tune", *argv], cwd=REPO,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while not _finished_trials(str(out / "ray")) and time.time() < deadline:
            assert proc.poll() is None, "the search ended before it could be interrupted"
            time.sleep(1)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before = _finished_trials(str(out / "ray"))
    assert before and not (out / "results.csv").exists()

    table = main(["--output", str(out), "--resume"])
    assert len(table) == 3 and set(table["status"]) == {"completed"}
    for trial, result in before.items():  # finished trials are kept, not run again
        row = table[table["trial"] == trial].iloc[0]
        assert row["test/recall@20"] == pytest.approx(result["test/recall@20"])
        assert row["time_s"] == pytest.approx(result["time_total_s"], abs=0.1)
    assert (out / "best_config.yaml").is_file()
    for trial in table["trial"]:  # each trial logs into its own folder, also in a reused worker
        logs = glob.glob(str(out / "ray" / trial / "log" / "*" / "*.log"))
        assert any("test result" in open(path).read() for path in logs), trial


@pytest.mark.parametrize("model", ["TextSASRec", "TextGRU4Rec", "SASRec"])
def test_shipped_spaces_search_config_keys_of_their_model(model, games):
    from recbole_llm2rec.quick_start import build_config

    space = load_space(os.path.join(REPO, "props", "tune", f"{model}.yaml"))
    config, _ = build_config(model, "Games", overrides={"data_path": games})
    assert set(space) <= set(config.final_config_dict)
    to_tune_space(space)


@pytest.mark.parametrize("alg, message", [
    ("optuna", "field '--search-alg' = 'optuna': its package is not installed"),
    ("gridsearch", "field '--search-alg' = 'gridsearch': unknown; choose one of random, ax"),
])
def test_search_algorithm_missing_or_unknown_is_a_one_line_error(tmp_path, capsys, alg, message):
    if alg == "optuna" and importlib.util.find_spec("optuna"):
        alg, message = "zoopt", message.replace("optuna", "zoopt")
    space = write_space(tmp_path, "learning_rate: {loguniform: [1.0e-3, 1.0e-2]}\n")
    with pytest.raises(SystemExit) as err:
        cli_main(main, PROG, ["--model", "SASRec", "--dataset", "Games", "--space", space,
                              "--search-alg", alg, "--output", str(tmp_path / "search")])
    assert err.value.code == 2
    text = capsys.readouterr().err
    assert text.startswith(f"{PROG}: error: {message}") and text.count("\n") == 1
    assert not (tmp_path / "search").exists()
