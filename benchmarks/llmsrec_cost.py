"""What one LLMSRec epoch costs: time a training step, a slice of the catalogue pass and a batch of
user prompts on real data, then extrapolate to the full epoch, the test and a larger sample.

    python -m benchmarks.llmsrec_cost --data_path=dataset/ --dataset=Games500 \
        --llm_path=models/SmolLM2-135M-Instruct --teacher_checkpoint=saved/SASRec-....pth \
        --scale_to Games2k

CPU seconds are measured with one torch thread (`time.process_time`), which a shared machine's
load does not inflate; wall seconds are reported too. The result goes to
`benchmarks/results/llmsrec/cost.<dataset>.json`; `llmsrec_comparison.py` puts it in its table.
"""
import argparse
import json
import os
import shlex
import sys
import time

import torch

from benchmarks.llmsrec_comparison import RUNS
from benchmarks.machine import machine
from recbole_llm2rec.feat import atomic_write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def timed(fn):
    """(result, CPU seconds, wall seconds) of fn()."""
    cpu, wall = time.process_time(), time.time()
    out = fn()
    return out, time.process_time() - cpu, time.time() - wall


def count(data_path, dataset):
    """(users, items) of an atomic dataset, from its .inter file."""
    users, items = set(), set()
    with open(os.path.join(data_path, dataset, f"{dataset}.inter"), encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            user, item = line.split("\t")[:2]
            users.add(user)
            items.add(item)
    return len(users), len(items)


def add_run_args(p):
    """The arguments naming an LLMSRec run's inputs (data, LLM folder, teacher) on parser p."""
    p.add_argument("--data_path", required=True)
    p.add_argument("--dataset", default="Games500")
    p.add_argument("--llm_path", required=True)
    p.add_argument("--teacher_checkpoint", required=True)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_args(p)
    p.add_argument("--items", type=int, default=64, help="catalogue items to time")
    p.add_argument("--users", type=int, default=64, help="evaluation user prompts to time")
    p.add_argument("--scale_to", nargs="*", default=["Games2k"], help="datasets to extrapolate to")
    p.add_argument("--set", nargs="*", default=["MAX_ITEM_LIST_LENGTH=5"])
    args = p.parse_args(argv)
    torch.set_num_threads(1)

    from recbole.data import create_dataset, data_preparation

    from recbole_llm2rec.quick_start import build_config
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in args.set)}
    config, cls = build_config("LLMSRec", args.dataset, config_dict={
        "data_path": args.data_path, "llm_path": args.llm_path,
        "teacher_checkpoint": args.teacher_checkpoint, "show_progress": False, **overrides})
    train, valid, _ = data_preparation(config, create_dataset(config))
    net, build_cpu, _ = timed(lambda: cls(config, train._dataset))
    n_examples = len(net.training_rows(train._dataset.inter_feat))

    batch = next(iter(train))
    users_in_step = len(net.training_rows(batch))

    def step():
        loss = sum(net.calculate_loss(batch))
        loss.backward()
        return loss
    _, step_cpu, step_wall = timed(step)
    with torch.no_grad():
        _, item_cpu, item_wall = timed(lambda: net.item_representations(
            list(range(1, args.items + 1))))
        rows = next(iter(valid))[0][torch.arange(args.users)]
        _, user_cpu, user_wall = timed(lambda: net.forward(rows))

    per = {"train_example": step_cpu / users_in_step, "item": item_cpu / args.items,
           "eval_user": user_cpu / args.users}
    per_wall = {"train_example": step_wall / users_in_step, "item": item_wall / args.items,
                "eval_user": user_wall / args.users}

    def epoch(n_train, n_items, n_users, unit):
        train_s = n_train * unit["train_example"]
        eval_s = (n_items - 1) * unit["item"] + n_users * unit["eval_user"]
        return {"train_s": round(train_s), "eval_s": round(eval_s),
                "epoch_s": round(train_s + eval_s)}

    n_users, n_items = count(args.data_path, args.dataset)
    estimates = {args.dataset: {"users": n_users, "items": n_items, "train_examples": n_examples,
                                "cpu_1_thread": epoch(n_examples, n_items, n_users, per)}}
    for name in args.scale_to:
        if os.path.isdir(os.path.join(args.data_path, name)):
            users, items = count(args.data_path, name)
            examples = round(n_examples * users / n_users)  # same share of users with a train row
            estimates[name] = {"users": users, "items": items, "train_examples": examples,
                               "cpu_1_thread": epoch(examples, items, users, per)}
    record = {"dataset": args.dataset, "llm": os.path.basename(os.path.normpath(args.llm_path)),
              "history_length": config["MAX_ITEM_LIST_LENGTH"],
              "llm_batch_size": config["llmsrec_llm_batch_size"],
              "measured": {"build_model_cpu_s": round(build_cpu, 1),
                           "train_step_users": users_in_step,
                           "train_step_cpu_s": round(step_cpu, 1),
                           "train_step_wall_s": round(step_wall, 1),
                           "items_timed": args.items, "items_cpu_s": round(item_cpu, 1),
                           "items_wall_s": round(item_wall, 1),
                           "users_timed": args.users, "users_cpu_s": round(user_cpu, 1),
                           "users_wall_s": round(user_wall, 1)},
              "per_unit_cpu_s": {k: round(v, 3) for k, v in per.items()},
              "per_unit_wall_s": {k: round(v, 3) for k, v in per_wall.items()},
              "estimates": estimates,
              "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
              "command": "python -m benchmarks.llmsrec_cost " + shlex.join(sys.argv[1:])}
    print(json.dumps(record, indent=1))
    atomic_write_text(os.path.join(RUNS, f"cost.{args.dataset}.json"),
                      lambda fh: json.dump(record, fh, indent=1))


if __name__ == "__main__":
    main()
