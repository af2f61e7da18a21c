"""RecBole's multi-process training (`nproc=2`, gloo on this CPU) on a real Games slice: two
processes train and test, one writes, and the test covers each user once with the metrics of
one process evaluating the same saved model (`recbole_llm2rec.distributed`)."""
import glob
import os

import pytest
import torch

import run_recbole
from chance import random_recall
from recbole_llm2rec.compat import get_trainer
from recbole_llm2rec.distributed import check_launch, spawn
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.feat import feat_path, write_feat
from recbole_llm2rec.quick_start import load_data_and_model, run, run_summary
from slices import write_slice
from test_models import SMALL, title_words_table
from tiny_llm import save_tiny_model

N_USERS = 499  # odd: DistributedSampler pads rank 1's share with a repeated user
TRAIN = {**SMALL, "text_emb": "words", "learning_rate": 0.005, "epochs": 4, "stopping_step": 100}
LLMSREC = {"MAX_ITEM_LIST_LENGTH": 5, "llmsrec_mlp_hidden_size": 16, "llmsrec_llm_batch_size": 16,
           "train_batch_size": 64, "show_progress": False, "epochs": 1}


@pytest.fixture(scope="module")
def words_root(tmp_path_factory):
    """The first 499 users of the Games fixture, with hashed title words as the `.feat`."""
    root = write_slice(str(tmp_path_factory.mktemp("data")), "Games", N_USERS)
    folder = os.path.join(root, "Games")
    write_feat(feat_path(folder, "Games", "words"),
               *title_words_table(os.path.join(folder, "Games.item")))
    return root


def train_cases(config_dict, cases):
    """One rank's runs of `cases` ({name: (model, settings)}), one after another in the same
    process group, each with its own checkpoint folder. Returns {name: run_summary}."""
    return {name: run_summary(model=model, dataset="Games", config_dict={
        **config_dict, **settings,
        "checkpoint_dir": os.path.join(config_dict["checkpoint_dir"], name)})
        for name, (model, settings) in cases.items()}


@pytest.fixture(scope="module")
def llmsrec_settings(tmp_path_factory):
    """LLMSRec on the first 13 users, with a tiny random Qwen2 and a one-epoch SASRec teacher."""
    out = tmp_path_factory.mktemp("llmsrec")
    root = write_slice(str(out / "data"), "Games", 13)
    teacher = run("SASRec", "Games", config_dict={
        "hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1, "epochs": 1,
        "MAX_ITEM_LIST_LENGTH": 5, "show_progress": False, "data_path": root,
        "checkpoint_dir": str(out / "teacher")})["model_file"]
    llm = save_tiny_model(out / "llm", "qwen2")
    return {**LLMSREC, "data_path": root, "llm_path": str(llm), "teacher_checkpoint": teacher}


def written_files(folder, pattern="*"):
    return sorted(glob.glob(os.path.join(folder, "**", pattern), recursive=True))


def check_like_one_process(summary, beat_chance=True):
    """The saved model, tested by one process: the same users, each once, and the same metrics;
    only the checkpoint is in its folder (no second file, no temp file)."""
    folder = os.path.dirname(summary["model_file"])
    assert written_files(folder) == [summary["model_file"]]
    config, net, dataset, _, _, test = load_data_and_model(summary["model_file"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    alone = trainer.evaluate(test, load_best_model=False)
    users = trainer.last_eval_users.tolist()
    assert len(users) % 2 == 1 and len(set(users)) == len(users)  # padding had to be dropped
    assert summary["test_users"] == users
    assert summary["test_result"] == dict(alone)
    if beat_chance:
        chance = random_recall(dataset, 20)
        assert summary["test_result"]["recall@20"] > 3 * chance, (summary["test_result"], chance)


def test_two_processes_train_each_model_and_test_every_user_once(words_root, llmsrec_settings,
                                                                  tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # RecBole logs into ./log/
    cases = {"SASRec": ("SASRec", {}), "TextGRU4Rec": ("TextGRU4Rec", {}),
             "TextGRU4Rec-text+id": ("TextGRU4Rec", {"item_repr": "text+id"}),
             "LLMSRec": ("LLMSRec", llmsrec_settings)}
    summaries = spawn(train_cases, dict(config_dict={
        **TRAIN, "data_path": words_root, "checkpoint_dir": str(tmp_path / "saved")},
        cases=cases), nproc=2)
    logs = written_files(str(tmp_path / "log"), "*.log")
    assert sorted(os.path.basename(os.path.dirname(p)) for p in logs) == sorted(
        model for model, _ in cases.values())  # one log per run: rank 0's
    for name, summary in summaries.items():
        assert len(summary["valid_scores"]) == (1 if name == "LLMSRec" else TRAIN["epochs"])
        # LLMSRec's 13 users are too few to learn from: the others must beat chance
        check_like_one_process(summary, beat_chance=name != "LLMSRec")


def test_run_recbole_with_nproc_2(words_root, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    run_recbole.main([
        "--model=TextSASRec", "--dataset=Games", "--nproc=2", f"--data_path={words_root}",
        "--text_emb=words", "--hidden_size=32", "--inner_size=64", "--n_layers=1",
        "--learning_rate=0.005", "--epochs=4", "--show_progress=False",
        f"--checkpoint_dir={tmp_path / 'saved'}"])
    assert len(written_files(str(tmp_path / "log"), "*.log")) == 1
    (model_file,) = written_files(str(tmp_path / "saved"))
    # the printed metrics are those of one process testing the saved model
    config, net, dataset, _, _, test = load_data_and_model(model_file)
    alone = get_trainer(config["MODEL_TYPE"], config["model"])(config, net).evaluate(
        test, load_best_model=False)
    printed = "  ".join(f"{k}: {v:.4f}" for k, v in alone.items())
    assert f"TextSASRec on Games test: {printed}" in capsys.readouterr().out
    assert alone["recall@20"] > 3 * random_recall(dataset, 20), dict(alone)


def test_bad_input_is_one_line_before_any_process_starts(tmp_path):
    with pytest.raises(InputError, match="dataset folder not found"):
        run("SASRec", "Games", config_dict={"data_path": str(tmp_path)}, nproc=2)
    # on GPUs, one per process: RecBole would fail in every process on a device it cannot see
    with pytest.raises(InputError, match=r"field 'gpu_id' = '0': one GPU per process: list 2"):
        check_launch({"gpu_id": "0", "device": torch.device("cuda")}, 2)
    check_launch({"gpu_id": "0,1", "device": torch.device("cuda")}, 2)
    check_launch({"gpu_id": "0", "device": torch.device("cpu")}, 2)
