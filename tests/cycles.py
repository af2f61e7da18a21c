"""A synthetic sequential dataset where learning must show: items lie on random cycles and every
user walks one cycle, so the next item is a fixed function of the previous one. Written as
RecBole atomic files (`.inter` with timestamps, `.item` with titles) in code: no fixture."""
import os

import numpy as np

WORDS = ("red", "blue", "green", "quiet", "fast", "gold", "tiny", "grand", "dark", "soft",
         "wild", "cool", "pro", "mini", "ultra", "classic")


def cycle_successors(n_items, cycle_length, rng):
    """successor[i] of items 1..n_items (index 0 unused): the items shuffled and cut into
    cycles of `cycle_length`, each item followed by the next one on its cycle."""
    order = rng.permutation(np.arange(1, n_items + 1))
    succ = np.zeros(n_items + 1, dtype=np.int64)
    for start in range(0, n_items, cycle_length):
        cycle = order[start:start + cycle_length]
        succ[cycle] = np.roll(cycle, -1)
    return succ


def walk(succ, start, length):
    items = [int(start)]
    while len(items) < length:
        items.append(int(succ[items[-1]]))
    return items


def write_cycles(out_dir, name="Cycles", n_users=400, n_items=200, cycle_length=10,
                 lengths=(6, 9), seed=0):
    """Write `out_dir/<name>/<name>.{inter,item}`: each user walks its cycle from a random item
    for a random length in `lengths` (inclusive), one interaction a day. Returns the successor
    table (for held-out walks)."""
    rng = np.random.default_rng(seed)
    succ = cycle_successors(n_items, cycle_length, rng)
    folder = os.path.join(out_dir, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for user in range(1, n_users + 1):
            start_day = int(rng.integers(16000, 17000))
            items = walk(succ, rng.integers(1, n_items + 1), rng.integers(lengths[0],
                                                                          lengths[1] + 1))
            for k, item in enumerate(items):
                fh.write(f"u{user}\ti{item}\t{(start_day + k) * 86400}\n")
    with open(os.path.join(folder, f"{name}.item"), "w", encoding="utf-8") as fh:
        fh.write("item_id:token\ttitle:token_seq\n")
        for item in range(1, n_items + 1):
            a, b = rng.choice(len(WORDS), 2, replace=False)
            fh.write(f"i{item}\t{WORDS[a]} {WORDS[b]} gadget {item}\n")
    return succ


# ---- LLMSRec on the cycles: one run and what the learning test checks ------------------------
HISTORY = 10
TEACHER = {"hidden_size": 32, "inner_size": 64, "n_layers": 1, "n_heads": 1, "epochs": 30,
           "stopping_step": 3, "learning_rate": 0.01, "train_batch_size": 256}
# a random LM with std-0.02 weights passes its input almost unchanged to the last position
# (every user and item gets the same vector, pairwise cosine 0.9995); std 0.2 mixes the slots
# in (0.84-0.95, near SmolLM2-135M's), as a trained LM does
LLM = {"initializer_range": 0.2}
LLMSREC = {"llmsrec_mlp_hidden_size": 64, "llmsrec_llm_batch_size": 64, "learning_rate": 0.003,
           "train_batch_size": 64, "epochs": 8, "eval_batch_size": 512}
COMMON = {"MAX_ITEM_LIST_LENGTH": HISTORY, "show_progress": False, "state": "WARNING",
          "seed": 2020}


def held_out_batch(net, dataset, succ, n=200, seed=1):
    """Fresh walks on the cycles (users the model never saw), as a batch of histories."""
    import torch
    from recbole.data.interaction import Interaction

    rng = np.random.default_rng(seed)
    seq = torch.zeros(n, HISTORY, dtype=torch.long)
    times = torch.zeros(n, HISTORY)
    length = torch.from_numpy(rng.integers(4, 8, n))
    for row in range(n):
        items = walk(succ, rng.integers(1, len(succ)), int(length[row]))
        seq[row, :len(items)] = torch.from_numpy(
            dataset.token2id("item_id", [f"i{i}" for i in items]))
        times[row, :len(items)] = torch.arange(len(items)) * 86400.0 + 1.4e9
    return Interaction({net.ITEM_SEQ: seq, net.ITEM_SEQ_LEN: length, net.TIME_SEQ: times})


def alignment(net, batch):
    """(mean cos(f_user, f_CF-user(teacher)) of the batch's users, mean rank of each user's own
    teacher vector among all the batch's teacher vectors by that cosine)."""
    import torch
    import torch.nn.functional as F

    with torch.no_grad():
        user = F.normalize(net.forward(batch), dim=-1)
        teacher = F.normalize(net.f_cf_user(net.teacher(batch[net.ITEM_SEQ],
                                                        batch[net.ITEM_SEQ_LEN])), dim=-1)
    cosine = (user * teacher).sum(-1)
    rank = ((user @ teacher.T) > cosine.view(-1, 1)).sum(1).float() + 1
    return float(cosine.mean()), float(rank.mean())


def learn(root, saved, llm_folder, **overrides):
    """Train the SASRec teacher, LLMSRec (tiny random Llama saved in `llm_folder`, `overrides`
    on `LLMSREC`) and Pop on the cycles written under `root`; measure what the learning test
    checks. Returns a dict of figures (and the LLMSRec run under 'run')."""
    import math

    import torch
    from tests.chance import random_recall
    from tests.tiny_llm import save_tiny_model

    from recbole_llm2rec.compat import get_trainer
    from recbole_llm2rec.evaluation.shuffle import shuffle_histories
    from recbole_llm2rec.quick_start import run

    succ = write_cycles(root)
    common = {**COMMON, "data_path": root, "checkpoint_dir": saved}
    teacher = run("SASRec", "Cycles", config_dict={**common, **TEACHER})
    llm = save_tiny_model(llm_folder, "llama", **LLM)
    out = run("LLMSRec", "Cycles", config_dict={**common, **LLMSREC, **overrides, "llm_path": llm,
                                                "teacher_checkpoint": teacher["model_file"]})
    pop = run("Pop", "Cycles", config_dict={**common, "epochs": 1})
    net, config = out["model"], out["config"]
    dataset, train, _, test = out["data"]
    with torch.no_grad():
        retrieval = float(np.mean([net.calculate_loss(batch)[0].item() for batch in train]))
        # in-batch: each user's candidates are the batch's distinct targets not in its history
        candidates = (1 + net.num_negatives if net.negatives == "sampled" else
                      np.mean([len(torch.unique(b[net.POS_ITEM_ID][net.training_rows(b)]))
                               for b in train]))
    cosine, rank = alignment(net, held_out_batch(net, dataset, succ))
    plain = out["test_result"]["recall@10"]
    test._dataset.inter_feat = shuffle_histories(test._dataset.inter_feat, config, 0)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    shuffled = trainer.evaluate(test, load_best_model=False, show_progress=False)["recall@10"]
    return {"teacher_recall@10": teacher["test_result"]["recall@10"],
            "retrieval_loss": retrieval, "log_candidates": math.log(candidates),
            "recall@10": plain, "random_recall@10": random_recall(dataset, 10),
            "pop_recall@10": pop["test_result"]["recall@10"], "shuffled_recall@10": shuffled,
            "held_out_cosine": cosine, "held_out_own_teacher_rank": rank, "held_out_users": 200,
            "valid_scores": out["valid_scores"], "run": out}
