"""LLMSRec learns where learning must show: on items lying on random cycles (the next item is a
fixed function of the previous one; `cycles.py`), with a tiny random Llama, its SASRec teacher,
retrieval, distillation and the use of order are each checked against a bar."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from recbole.data.interaction import Interaction

from cycles import walk, write_cycles
from chance import random_recall
from recbole_llm2rec.compat import get_trainer
from recbole_llm2rec.evaluation.shuffle import shuffle_histories
from recbole_llm2rec.quick_start import run
from tiny_llm import save_tiny_model

HISTORY = 10
TEACHER = {"hidden_size": 32, "inner_size": 64, "n_layers": 1, "n_heads": 1, "epochs": 30,
           "stopping_step": 3, "learning_rate": 0.01, "train_batch_size": 256}
# a random LM with std-0.02 weights passes its input almost unchanged to the last position
# (every user and item gets the same vector, pairwise cosine 0.9995); std 0.2 mixes the
# slots in (0.84-0.95, near SmolLM2-135M's 0.97), as a trained LM does
LLM = {"initializer_range": 0.2}
LLMSREC = {"llmsrec_mlp_hidden_size": 64, "llmsrec_llm_batch_size": 64, "learning_rate": 0.003,
           "train_batch_size": 64, "epochs": 8, "eval_batch_size": 512}
COMMON = {"MAX_ITEM_LIST_LENGTH": HISTORY, "show_progress": False, "state": "WARNING",
          "seed": 2020}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(teacher run, LLMSRec run, Pop run, successor table) on the cycles dataset."""
    root = str(tmp_path_factory.mktemp("cycles"))
    succ = write_cycles(root)
    saved = str(tmp_path_factory.mktemp("saved"))
    common = {**COMMON, "data_path": root, "checkpoint_dir": saved}
    teacher = run("SASRec", "Cycles", config_dict={**common, **TEACHER})
    llm = save_tiny_model(tmp_path_factory.mktemp("llama"), "llama", **LLM)
    llmsrec = run("LLMSRec", "Cycles", config_dict={
        **common, **LLMSREC, "llm_path": llm, "teacher_checkpoint": teacher["model_file"]})
    pop = run("Pop", "Cycles", config_dict={**common, "epochs": 1})
    return teacher, llmsrec, pop, succ


def held_out_batch(net, dataset, succ, n=200, seed=1):
    """Fresh walks on the cycles (users the model never saw), as a batch of histories."""
    rng = np.random.default_rng(seed)
    n_items = len(succ) - 1
    seq = torch.zeros(n, HISTORY, dtype=torch.long)
    times = torch.zeros(n, HISTORY)
    length = torch.from_numpy(rng.integers(4, 8, n))
    for row in range(n):
        items = walk(succ, rng.integers(1, n_items + 1), int(length[row]))
        seq[row, :len(items)] = torch.from_numpy(dataset.token2id("item_id", [f"i{i}" for i in items]))
        times[row, :len(items)] = torch.arange(len(items)) * 86400.0 + 1.4e9
    return Interaction({net.ITEM_SEQ: seq, net.ITEM_SEQ_LEN: length, net.TIME_SEQ: times})


def test_the_teacher_learns_the_cycles(runs):
    teacher, *_ = runs
    assert teacher["test_result"]["recall@10"] >= 0.9


def test_llmsrec_retrieves_beyond_chance_and_pop(runs):
    _, llmsrec, pop, _ = runs
    net, (dataset, train, _, _) = llmsrec["model"], llmsrec["data"]
    with torch.no_grad():
        losses = [net.calculate_loss(batch)[0].item() for batch in train]
    candidates = 1 + net.num_negatives
    assert np.mean(losses) < 0.8 * math.log(candidates), losses
    recall = llmsrec["test_result"]["recall@10"]
    assert recall >= 3 * random_recall(dataset, 10), recall
    assert recall > pop["test_result"]["recall@10"], (recall, pop["test_result"])


def test_distillation_aligns_held_out_users_with_the_teacher(runs):
    _, llmsrec, _, succ = runs
    net, dataset = llmsrec["model"], llmsrec["data"][0]
    batch = held_out_batch(net, dataset, succ)
    with torch.no_grad():
        user = F.normalize(net.forward(batch), dim=-1)
        teacher = F.normalize(net.f_cf_user(net.teacher(batch[net.ITEM_SEQ],
                                                        batch[net.ITEM_SEQ_LEN])), dim=-1)
    cosine = (user * teacher).sum(-1)
    assert cosine.mean() >= 0.3, cosine.mean()
    # each user's own teacher vector stands out among all held-out users' (not one shared
    # direction): its rank among the 200 is far better than a random one's (100.5)
    rank = ((user @ teacher.T) > cosine.view(-1, 1)).sum(1).float() + 1
    assert rank.mean() < 0.25 * (len(rank) + 1) / 2, rank.mean()


def test_shuffled_test_histories_lower_recall(runs):
    _, llmsrec, _, _ = runs
    net, config = llmsrec["model"], llmsrec["config"]
    test = llmsrec["data"][3]
    plain = llmsrec["test_result"]["recall@10"]
    test._dataset.inter_feat = shuffle_histories(test._dataset.inter_feat, config, 0)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    shuffled = trainer.evaluate(test, load_best_model=False, show_progress=False)["recall@10"]
    assert shuffled <= 0.7 * plain, (plain, shuffled)
