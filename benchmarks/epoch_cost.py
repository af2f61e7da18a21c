"""Training and full-sort evaluation cost of TextSASRec variants vs RecBole's SASRec, in one run.

    python -m benchmarks.epoch_cost --dataset Games --data_path dataset/ --text_emb minilm \
        --variants text text+id:item_repr=text+id moe:adapter_type=moe --batches 30

Every model shares the dataset, batch size (train_batch_size) and sequence length
(MAX_ITEM_LIST_LENGTH) of the props (`--set key=value` overrides them for all). Each round
trains every model in turn (SASRec, then each variant) on the same `--batches` batches (0: a
whole epoch), so machine load affects all alike; both wall time and the process's CPU time are
recorded (CPU time is what a shared machine's load disturbs least). An epoch's cost is the time
per batch times the batches of an epoch. After each round's training, every model also runs
one full-sort evaluation of the test users (wall time). Appends the figures to benchmarks/results/epoch_cost.md.
"""
import argparse
import os
import shlex
import sys
import time

import torch

from benchmarks.machine import machine
from recbole.data import create_dataset, data_preparation
from recbole.utils import init_seed

from recbole_llm2rec.compat import get_trainer
from recbole_llm2rec.props import default
from recbole_llm2rec.quick_start import build_config, parse_overrides

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "epoch_cost.md")


def parse_variant(spec):
    """'name:key=value,key=value' (or 'name') -> (name, {key: value string})."""
    name, _, settings = spec.partition(":")
    pairs = [kv for kv in settings.split(",") if kv]
    return name, parse_overrides([f"--{kv}" for kv in pairs])


def train_batches(trainer, batches):
    """Train on `batches` as RecBole's trainer does. Returns (wall s, CPU s)."""
    model, optimizer = trainer.model, trainer.optimizer
    model.train()
    wall, cpu = time.perf_counter(), time.process_time()
    for interaction in batches:
        optimizer.zero_grad()
        model.calculate_loss(interaction).backward()
        optimizer.step()
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="Games")
    p.add_argument("--data_path", default="dataset/")
    p.add_argument("--text_emb", default=default("text_emb"),
                   help="default: props/overall.yaml's")
    p.add_argument("--variants", nargs="+", default=["text"],
                   help="TextSASRec variants as name[:key=value,...], e.g. moe:adapter_type=moe")
    p.add_argument("--rounds", type=int, default=2, help="times each model is timed (alternating)")
    p.add_argument("--batches", type=int, default=0, help="batches timed per round (0: an epoch)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="RecBole setting for every model (repeatable), e.g. --set train_batch_size=256")
    args = p.parse_args(argv)

    common = {"data_path": args.data_path, "text_emb": args.text_emb, "show_progress": False,
              **parse_overrides([f"--{kv}" for kv in args.set])}
    config, _ = build_config("SASRec", args.dataset, config_dict=common)
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    batches = []
    for interaction in train_data:
        if args.batches and len(batches) == args.batches:
            break
        batches.append(interaction.to(config["device"]))
    models = {"SASRec": ("SASRec", {})}
    models.update({f"TextSASRec {name}": ("TextSASRec", settings)
                   for name, settings in map(parse_variant, args.variants)})
    trainers = {}
    for label, (model, settings) in models.items():
        cfg, cls = build_config(model, args.dataset, config_dict={**common, **settings})
        init_seed(cfg["seed"], cfg["reproducibility"])
        net = cls(cfg, train_data._dataset).to(cfg["device"])
        trainers[label] = get_trainer(cfg["MODEL_TYPE"], model)(cfg, net)
    times = {label: [] for label in trainers}
    evals = {label: [] for label in trainers}
    for r in range(args.rounds):
        for label, trainer in trainers.items():
            times[label].append(train_batches(trainer, batches))
            start = time.perf_counter()
            trainer.evaluate(test_data, load_best_model=False, show_progress=False)
            evals[label].append(time.perf_counter() - start)
            print(f"round {r}: {label} wall {times[label][-1][0]:.1f}s cpu {times[label][-1][1]:.1f}s, "
                  f"full-sort test {evals[label][-1]:.1f}s", flush=True)

    per_epoch = len(train_data) / len(batches)
    base_wall = min(w for w, _ in times["SASRec"])
    base_cpu = min(c for _, c in times["SASRec"])
    base_eval = min(evals["SASRec"])
    rows = []
    for label, ts in times.items():
        wall, cpu = min(w for w, _ in ts), min(c for _, c in ts)
        rows.append(f"| {label} | {', '.join(f'{w:.1f}/{c:.1f}' for w, c in ts)} | "
                    f"{cpu * per_epoch:.0f} | **{cpu / base_cpu:.2f}x** | {wall / base_wall:.2f}x | "
                    f"{min(evals[label]):.2f} | **{min(evals[label]) / base_eval:.2f}x** |")
    lines = [
        f"## {args.dataset}, text_emb={args.text_emb}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Command: `python -m benchmarks.epoch_cost {shlex.join(argv if argv is not None else sys.argv[1:])}`  ",
        f"Machine: {machine()}; batch {config['train_batch_size']}, max length "
        f"{config['MAX_ITEM_LIST_LENGTH']}, hidden {config['hidden_size']}, {len(batches)} of "
        f"{len(train_data)} batches of an epoch timed per round.",
        "",
        "| model | wall/CPU s per round | CPU s per epoch (est.) | CPU vs SASRec | wall vs SASRec "
        "| full-sort test s | eval vs SASRec |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "Ratios use each model's fastest round; target <= 1.3x.",
        "",
    ]
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
