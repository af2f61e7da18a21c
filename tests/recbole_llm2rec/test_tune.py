"""Ray Tune search: space parsing and a real 2-trial search on a slice of ml-100k (CPU)."""
import glob
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

import slices
from recbole_llm2rec.tune import TuneError, load_space, main, parse_overrides, to_tune_space

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


@pytest.mark.parametrize("text, message", [
    ("lr: {logunifrom: [1.0e-4, 1.0e-2]}", "lr: unknown distribution 'logunifrom'"),
    ("lr: {loguniform: [0, 1.0e-2]}", "lr: loguniform needs 0 < low"),
    ("p: {uniform: [0.5, 0.1]}", "p: uniform needs low < high, got [0.5, 0.1]"),
    ("n: {randint: [1, 2.5]}", "n: bound 2.5 is not an integer"),
    ("n: {randint: [1]}", "n: randint needs [low, high], got [1]"),
    ("h: {choice: []}", "h: choice needs a non-empty list"),
    ("h: 64", "h: expected one distribution such as {choice: [a, b]}, got 64"),
    ("- a", "expected a mapping of config keys to distributions"),
])
def test_space_errors_name_the_key_and_value(tmp_path, text, message):
    path = write_space(tmp_path, text + "\n")
    with pytest.raises(TuneError, match=re.escape(message)) as err:
        load_space(path)
    assert str(err.value).startswith(path)


def test_randint_includes_both_bounds():
    domain = to_tune_space({"n": ("randint", [1, 3])})["n"]
    drawn = set(domain.sample(size=200, random_state=0))
    assert drawn == {1, 2, 3}


def test_overrides_are_key_value_and_leave_trial_keys_alone():
    assert parse_overrides(["--epochs=1", "--data_path=a=b"]) == {"epochs": "1",
                                                                   "data_path": "a=b"}
    with pytest.raises(ValueError, match="'epochs'"):
        parse_overrides(["epochs"])
    with pytest.raises(TuneError, match="--checkpoint_dir is set by the tuner"):
        parse_overrides(["--checkpoint_dir=x"])


@pytest.fixture(scope="module")
def ml100k_head(tmp_path_factory):
    """The first 120 users of ml-100k (RecBole's package, converted), as data_path/ml-100k."""
    from dataset_atomic import ml100k

    full = tmp_path_factory.mktemp("full")
    ml100k.convert(str(full))
    return slices.write_slice(str(tmp_path_factory.mktemp("data")), "ml-100k", 120, source=str(full))


TINY = ["--epochs=1", "--n_layers=1", "--n_heads=4", "--inner_size=32",
        "--train_batch_size=256", "--MAX_ITEM_LIST_LENGTH=10"]


def test_unknown_key_fails_before_ray_starts(tmp_path, ml100k_head, capsys):
    space = write_space(tmp_path, "learing_rate: {loguniform: [1.0e-3, 1.0e-2]}\n")
    out = tmp_path / "search"
    with pytest.raises(SystemExit) as err:
        main(["--model", "SASRec", "--dataset", "ml-100k", "--space", space,
              "--output", str(out), f"--data_path={ml100k_head}", *TINY])
    assert err.value.code == 2
    assert "'learing_rate' is not a config key of SASRec" in capsys.readouterr().err
    assert not out.exists() or not os.listdir(out)


def test_two_trial_search_writes_sorted_table_and_usable_best_config(tmp_path, ml100k_head,
                                                                     monkeypatch, capsys):
    from recbole_llm2rec.quick_start import build_config

    monkeypatch.chdir(tmp_path)  # relative paths must be made absolute for the trials
    # hidden_size 18 is not a multiple of n_heads=4: with this seed the second trial fails
    space = write_space(tmp_path, "learning_rate: {loguniform: [1.0e-3, 1.0e-2]}\n"
                                  "hidden_size: {choice: [16, 18]}\n")
    data = os.path.relpath(ml100k_head, tmp_path)
    argv = ["--model", "SASRec", "--dataset", "ml-100k", "--space", "space.yaml",
            "--num-samples", "2", "--cpus", "1", "--seed", "5", "--output", "search",
            f"--data_path={data}", *TINY]
    table = main(argv)

    saved = pd.read_csv(tmp_path / "search" / "results.csv")
    assert len(saved) == 2 and list(saved["status"]) == ["completed", "error"]
    ok, bad = saved.iloc[0], saved.iloc[1]
    assert ok["hidden_size"] == 16 and bad["hidden_size"] == 18
    assert "multiple of the number of attention heads" in bad["error"]
    assert 0 < ok["valid/recall@20"] <= 1 and 0 <= ok["test/ndcg@10"] <= 1
    assert ok["epochs"] == 1
    assert math.isnan(bad["valid/recall@20"]) and math.isnan(bad["test/ndcg@10"])
    assert list(table["trial"]) == list(saved["trial"])
    md = (tmp_path / "search" / "results.md").read_text().splitlines()
    assert md[0].startswith("| trial | status | learning_rate | hidden_size | epochs | "
                            "valid/recall@20 |")
    assert len(md) == 4 and "| completed |" in md[2] and "| error |" in md[3]
    for trial in saved["trial"]:
        assert (tmp_path / "search" / "ray" / trial / "params.json").is_file()

    best = tmp_path / "search" / "best_config.yaml"
    values = yaml.safe_load(best.read_text())
    assert values["hidden_size"] == 16
    assert values["learning_rate"] == pytest.approx(ok["learning_rate"])
    config, _ = build_config("SASRec", "ml-100k", [str(best)])
    assert config["hidden_size"] == 16 and config["epochs"] == 1 and config["n_heads"] == 4
    assert os.path.samefile(config["data_path"], os.path.join(ml100k_head, "ml-100k"))

    with pytest.raises(SystemExit):
        main(argv)
    assert "already holds a search; pass --resume" in capsys.readouterr().err


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
def test_search_killed_with_sigkill_resumes_and_keeps_finished_trials(tmp_path, ml100k_head):
    space = write_space(tmp_path, "learning_rate: {loguniform: [1.0e-3, 1.0e-2]}\n")
    out = tmp_path / "search"
    argv = ["--model", "SASRec", "--dataset", "ml-100k", "--space", space, "--num-samples", "3",
            "--cpus", "2", "--output", str(out), f"--data_path={ml100k_head}", *TINY]
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
def test_shipped_spaces_search_config_keys_of_their_model(model, ml100k_head):
    from recbole_llm2rec.quick_start import build_config

    space = load_space(os.path.join(REPO, "props", "tune", f"{model}.yaml"))
    config, _ = build_config(model, "ml-100k", overrides={"data_path": ml100k_head})
    assert set(space) <= set(config.final_config_dict)
    to_tune_space(space)


@pytest.mark.parametrize("alg, message", [
    ("optuna", "--search-alg optuna: its package is not installed"),
    ("gridsearch", "--search-alg 'gridsearch' is unknown; choose one of random, ax"),
])
def test_search_algorithm_missing_or_unknown_is_a_one_line_error(tmp_path, capsys, alg, message):
    pytest.importorskip("ray")
    if alg == "optuna" and importlib.util.find_spec("optuna"):
        pytest.skip("optuna is installed here")
    space = write_space(tmp_path, "learning_rate: {loguniform: [1.0e-3, 1.0e-2]}\n")
    with pytest.raises(SystemExit) as err:
        main(["--model", "SASRec", "--dataset", "ml-100k", "--space", space,
              "--search-alg", alg, "--output", str(tmp_path / "search")])
    assert err.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "search").exists()
