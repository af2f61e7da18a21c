"""A real (short) training + evaluation on ml-100k, with the embedded default embedder."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

from recbole.data import create_dataset, data_preparation

from dataset_atomic.ml100k import convert as convert_ml100k
from pretrain.extract import ensure_feat
from recbole_llm2rec import TextSASRec
from recbole_llm2rec.compat import get_trainer
from recbole_llm2rec.feat import read_feat
from chance import random_recall
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.quick_start import (build_config, check_data, load_data_and_model,
                                         props_files, resolve_model, run)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# a small model, and only the users with fewer than 40 ratings (~1/3 of them): a short run
FAST = {"hidden_size": 32, "inner_size": 64, "n_layers": 1, "epochs": 2, "show_progress": False,
        "user_inter_num_interval": "[0,40)"}


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory):
    """data_path with ml-100k converted from RecBole's package and its MiniLM `.feat`."""
    root = str(tmp_path_factory.mktemp("data"))
    convert_ml100k(root)
    config, _ = build_config("TextSASRec", "ml-100k", config_dict={"data_path": root})
    path = ensure_feat(config["data_path"], "ml-100k", "minilm")
    return root, path


def test_embedded_default_feat_covers_every_item(ml100k):
    _, path = ml100k
    tokens, emb = read_feat(path)
    assert len(tokens) == 1682 and emb.shape == (1682, 384)
    assert path.endswith(os.path.join("ml-100k", "ml-100k.minilm.feat"))


def test_text_sasrec_trains_and_reloads_its_best_checkpoint(ml100k, tmp_path):
    root, _ = ml100k
    seen = []
    result = run("TextSASRec", "ml-100k", config_dict={
        **FAST, "data_path": root, "checkpoint_dir": str(tmp_path)},
        callback_fn=lambda epoch, valid: seen.append((epoch, dict(valid))))
    test = result["test_result"]
    assert set(test) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    assert 0 < test["ndcg@10"] <= test["recall@10"] <= test["recall@20"] <= 1
    assert [e for e, _ in seen] == [0, 1] and "recall@20" in seen[0][1]
    assert not torch.is_anomaly_enabled()
    # the checkpoint is readable by torch's safe loader, and holds the frozen table
    ckpt = torch.load(result["model_file"], weights_only=True)
    assert ckpt["config"]["model"] == "TextSASRec" and ckpt["config"]["hidden_size"] == 32
    config = result["config"]
    train_data, _, _ = data_preparation(config, create_dataset(config))
    n_items = train_data._dataset.item_num  # the items of the filtered users, + [PAD]
    assert 500 < n_items < 1683
    assert ckpt["state_dict"]["item_embedding.text_emb"].shape == (n_items, 384)
    # RecBole's own resume path reads it too (torch's default, safe torch.load)
    trainer = get_trainer(config["MODEL_TYPE"], "TextSASRec")(
        config, TextSASRec(config, train_data._dataset))
    trainer.resume_checkpoint(result["model_file"])
    assert trainer.start_epoch == ckpt["epoch"] + 1
    assert torch.equal(trainer.model.item_embedding.adapter.linear.weight,
                       ckpt["state_dict"]["item_embedding.adapter.linear.weight"])


def test_builtin_sasrec_beats_popularity_and_its_checkpoint_reproduces_the_test(ml100k, tmp_path):
    root, _ = ml100k
    settings = {**FAST, "data_path": root, "checkpoint_dir": str(tmp_path)}
    result = run("SASRec", "ml-100k", config_dict=settings)
    assert result["config"]["MAX_ITEM_LIST_LENGTH"] == 10  # our props, not RecBole's 50
    test = result["test_result"]
    # bars computed on the same data: a random ranking, and RecBole's Pop through the same runner
    pop = run("Pop", "ml-100k", config_dict={**settings, "epochs": 1})["test_result"]
    config, model, dataset, _, _, test_data = load_data_and_model(result["model_file"])
    chance = random_recall(dataset, 20)
    assert test["recall@20"] > 3 * chance, (dict(test), chance)
    assert test["recall@20"] > 1.5 * pop["recall@20"] and test["ndcg@20"] > 1.5 * pop["ndcg@20"]
    # the best checkpoint, reloaded alone, gives exactly the reported test metrics
    retested = get_trainer(config["MODEL_TYPE"], "SASRec")(config, model).evaluate(
        test_data, load_best_model=False)
    assert dict(retested) == dict(test)


def test_props_layering_and_precedence():
    names = [os.path.basename(p) for p in props_files(resolve_model("TextGRU4Rec"), "Games")]
    assert names == ["overall.yaml", "GRU4Rec.yaml", "TextGRU4Rec.yaml", "Games.yaml"]
    config, _ = build_config("TextGRU4Rec", "ml-100k", config_dict={"learning_rate": 0.5},
                             overrides={"learning_rate": "0.25", "dropout_prob": "0.1"})
    assert config["learning_rate"] == 0.25 and config["dropout_prob"] == 0.1
    assert config["embedding_size"] == 128 and config["weight_decay"] == 0.0001


def test_clear_errors_for_unknown_model_and_dataset(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'NoSuchRec'"):
        resolve_model("NoSuchRec")
    config, _ = build_config("SASRec", "Nowhere", config_dict={"data_path": str(tmp_path)})
    with pytest.raises(InputError, match="Nowhere: dataset folder not found"):
        check_data(config)


def test_cli_rejects_malformed_arguments():
    proc = subprocess.run([sys.executable, "run_recbole.py", "--model=SASRec", "epochs=3"],
                          cwd=REPO, capture_output=True, text=True)
    assert proc.returncode != 0 and "unrecognised argument 'epochs=3'" in proc.stderr


class Killed(Exception):
    """Stands for the process being killed after an epoch's validation."""


def test_a_killed_run_resumes_after_its_last_validated_epoch(ml100k, tmp_path):
    root, _ = ml100k
    settings = {**FAST, "epochs": 3, "data_path": root, "checkpoint_dir": str(tmp_path)}
    state_file = str(tmp_path / "resume.pth")

    def killed_after_epoch_0(epoch, valid):
        if epoch == 0:
            raise Killed

    with pytest.raises(Killed):
        run("SASRec", "ml-100k", config_dict=settings, resume_path=state_file,
            callback_fn=killed_after_epoch_0)
    state = torch.load(state_file, weights_only=True)  # plain values: the safe loader reads it
    assert state["epoch"] == 0 and len(state["valid_scores"]) == 1
    assert state["best_valid_score"] == max(state["valid_scores"])
    best_file = str(tmp_path / state["best_model_file"])
    shutil.copy(state_file, state_file + ".kept")  # for the weight check below
    assert os.path.isfile(best_file) and not os.path.exists(state_file + ".tmp")
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".tmp")]

    # settings that differ are refused, naming the file and the setting; the state is kept
    with pytest.raises(InputError, match=r"resume\.pth.*learning_rate differ"):
        run("SASRec", "ml-100k", config_dict={**settings, "learning_rate": 0.5},
            resume_path=state_file)
    assert os.path.isfile(state_file)

    epochs = []
    result = run("SASRec", "ml-100k", config_dict=settings, resume_path=state_file,
                 callback_fn=lambda epoch, valid: epochs.append(epoch))
    assert epochs == [1, 2] and result["resumed_after"] == 0
    assert result["valid_scores"][:1] == state["valid_scores"] and len(result["valid_scores"]) == 3
    assert result["best_valid_score"] == max(result["valid_scores"])
    assert set(result["best_valid_result"]) >= {"recall@20", "ndcg@10"}
    # training continued from the saved weights and optimizer
    config = result["config"]
    trainer = get_trainer(config["MODEL_TYPE"], "SASRec")(
        config, resolve_model("SASRec")(config, result["data"][1]._dataset))
    trainer.saved_model_file, trainer.valid_scores = best_file, []
    trainer._save_checkpoint(0, verbose=False, saved_model_file=str(tmp_path / "fresh.pth"))
    fresh = torch.load(str(tmp_path / "fresh.pth"), weights_only=True)
    assert trainer.resume(state_file + ".kept") == 0 and trainer.start_epoch == 1
    for name, value in trainer.model.state_dict().items():
        assert torch.equal(value, state["state_dict"][name]), name
    assert any(not torch.equal(fresh["state_dict"][n], v) for n, v in state["state_dict"].items())
    assert trainer.optimizer.state_dict()["state"][0]["step"] == state["optimizer"]["state"][0]["step"] > 0
    os.remove(str(tmp_path / "fresh.pth"))
    os.remove(state_file + ".kept")
    # the best checkpoint is the one in use since before the kill (overwritten on improvement)
    assert result["model_file"] == best_file and not os.path.exists(state_file)
    assert len([f for f in os.listdir(tmp_path) if f.endswith(".pth")]) == 1


def test_a_run_without_resume_path_keeps_no_resume_state(ml100k, tmp_path):
    root, _ = ml100k
    result = run("SASRec", "ml-100k", config_dict={
        **FAST, "epochs": 1, "data_path": root, "checkpoint_dir": str(tmp_path)})
    assert result["resumed_after"] is None and len(result["valid_scores"]) == 1
    assert os.listdir(tmp_path) == [os.path.basename(result["model_file"])]
