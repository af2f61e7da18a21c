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
import types

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
    assert (f"python -m pretrain.extract --model minilm --data_path {games}/ --dataset Games "
            f"--name minilm") in message


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
    assert md[0].startswith("| trial | status | learning_rate | hidden_size | epochs | "
                            "best_epoch | valid/recall@20 |")
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


def _result(trial, lr, dropout, history, final=None, error=None):
    """A stand-in for a Ray Tune trial result: `history` is its validation Recall@20 per epoch;
    `final` (the run's end) repeats the best validation value and adds test metrics."""
    rows = [{"valid/recall@20": v, "epoch": e + 1} for e, v in enumerate(history)]
    if final is not None:
        rows.append({"valid/recall@20": max(history), "epoch": len(history) + 1, **final})
    frame = pd.DataFrame(rows) if rows else None
    metrics = dict(rows[-1]) if rows else {}
    if rows:
        metrics["time_total_s"] = 60.0
    return types.SimpleNamespace(
        path=f"/x/ray/{trial}/", config={"learning_rate": lr, "hidden_dropout_prob": dropout},
        metrics=metrics, metrics_dataframe=frame, error=error)


def test_winner_is_the_best_validation_trial_even_when_another_tests_better(tmp_path, games):
    from recbole_llm2rec.quick_start import build_config
    from recbole_llm2rec.tune.report import best_config, trial_rows, write_best_config

    results = [
        # the best test metrics, a worse validation: must not be chosen
        _result("trial_a", 3e-3, 0.1, [0.05, 0.10], final={"test/recall@20": 0.30}),
        # the best validation of the completed trials (at epoch 2), worse test metrics
        _result("trial_b", 7e-4, 0.45, [0.08, 0.12, 0.11], final={"test/recall@20": 0.05}),
        # stopped by ASHA (no test run): never the chosen config
        _result("trial_c", 1e-3, 0.2, [0.04]),
        _result("trial_d", 2e-3, 0.3, [], error=RuntimeError("boom\nout of memory")),
    ]
    keys = ["learning_rate", "hidden_dropout_prob"]
    table = trial_rows(results, keys, "valid/recall@20", "max")
    assert list(table["trial"]) == ["trial_b", "trial_a", "trial_c", "trial_d"]
    assert list(table["status"]) == ["completed", "completed", "stopped", "error"]
    assert list(table["best_epoch"]) == [2, 2, 1, 0] and list(table["epochs"]) == [4, 3, 1, 0]
    assert table["test/recall@20"].max() == 0.30  # trial_a's, logged

    config, best = best_config(table, keys, {"item_repr": "text+id", "epochs": 300})
    assert best["trial"] == "trial_b" and best["valid/recall@20"] == 0.12
    search = {"model": "TextSASRec", "dataset": "Games", "config_files": [],
              "overrides": {"item_repr": "text+id", "epochs": "300"},
              "space_parsed": {"learning_rate": ("loguniform", [3e-4, 3e-3]),
                               "hidden_dropout_prob": ("uniform", [0.1, 0.5])},
              "search_alg": "random", "seed": 0, "grace_period": 40, "reduction_factor": 2}
    path = tmp_path / "props" / "tuned" / "TextSASRec-text+id-Games.yaml"
    write_best_config(str(path), search, config, best, "valid/recall@20", table)
    text = path.read_text()
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert "of 4 trials of TextSASRec on Games, the completed one with the best " \
           "valid/recall@20" in header[0] and "(UTC)" in header[0]
    assert "Winner trial_b: valid/recall@20 = 0.1200 (its test/recall@20 = 0.0500)" in text
    assert "Space: learning_rate ~ loguniform [0.0003, 0.003]; hidden_dropout_prob ~ uniform " \
           "[0.1, 0.5]." in text
    assert "Search: random, seed 0; ASHA on valid/recall@20, grace period 40 evaluations, " \
           "reduction factor 2; trials: 2 completed, 1 stopped, 1 error." in text
    assert "Fixed for every trial: --item_repr=text+id --epochs=300" in text

    # the yaml reloads through RecBole's Config with the winner's values
    config, _ = build_config("TextSASRec", "Games", [str(path)], overrides={"data_path": games})
    assert config["learning_rate"] == 7e-4 and config["hidden_dropout_prob"] == 0.45
    assert config["item_repr"] == "text+id" and config["epochs"] == 300
