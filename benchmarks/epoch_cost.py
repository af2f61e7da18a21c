"""One training epoch and one full-sort test evaluation of TextSASRec vs RecBole's SASRec on the
same data, in one run.

    python benchmarks/epoch_cost.py --dataset Games --data_path dataset/ --text_emb minilm

Both models share the dataset, batch size (train_batch_size) and sequence length
(MAX_ITEM_LIST_LENGTH) of the props; epochs alternate SASRec, TextSASRec, ... so that
machine load affects both alike. Appends the figures to benchmarks/results/epoch_cost.md.
"""
import argparse
import os
import platform
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from recbole.data import create_dataset, data_preparation  # noqa: E402
from recbole.utils import init_seed  # noqa: E402

from recbole_llm2rec.compat import get_trainer  # noqa: E402
from recbole_llm2rec.quick_start import build_config  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "epoch_cost.md")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="Games")
    p.add_argument("--data_path", default="dataset/")
    p.add_argument("--text_emb", default="minilm")
    p.add_argument("--rounds", type=int, default=2, help="epochs per model (alternating)")
    args = p.parse_args(argv)

    overrides = {"data_path": args.data_path, "text_emb": args.text_emb, "show_progress": False}
    config, _ = build_config("SASRec", args.dataset, config_dict=overrides)
    train_data, _, test_data = data_preparation(config, create_dataset(config))
    trainers = {}
    for name in ("SASRec", "TextSASRec"):
        cfg, cls = build_config(name, args.dataset, config_dict=overrides)
        init_seed(cfg["seed"], cfg["reproducibility"])
        net = cls(cfg, train_data._dataset).to(cfg["device"])
        trainers[name] = get_trainer(cfg["MODEL_TYPE"], name)(cfg, net)
    times = {name: [] for name in trainers}
    evals = {name: [] for name in trainers}
    for r in range(args.rounds):
        for name, trainer in trainers.items():
            start = time.perf_counter()
            trainer._train_epoch(train_data, r, show_progress=False)
            times[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            trainer.evaluate(test_data, load_best_model=False, show_progress=False)
            evals[name].append(time.perf_counter() - start)
            print(f"round {r}: {name} epoch {times[name][-1]:.1f}s, full-sort test "
                  f"{evals[name][-1]:.1f}s", flush=True)

    base, text = min(times["SASRec"]), min(times["TextSASRec"])
    ebase, etext = min(evals["SASRec"]), min(evals["TextSASRec"])
    dim = trainers["TextSASRec"].model.item_embedding.text_emb.shape[1]
    lines = [
        f"## {args.dataset}, text_emb={args.text_emb} ({dim}-d), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        f"Command: `python benchmarks/epoch_cost.py --dataset {args.dataset} "
        f"--data_path {args.data_path} --text_emb {args.text_emb} --rounds {args.rounds}`  ",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; batch {config['train_batch_size']}, "
        f"max length {config['MAX_ITEM_LIST_LENGTH']}, hidden {config['hidden_size']}, "
        f"{len(train_data)} batches/epoch.",
        "",
        "| model | epoch times (s) | best (s) | full-sort test evaluation (s) | best (s) |",
        "|---|---|---|---|---|",
        *(f"| {n} | {', '.join(f'{t:.1f}' for t in ts)} | {min(ts):.1f} | "
          f"{', '.join(f'{t:.2f}' for t in evals[n])} | {min(evals[n]):.2f} |"
          for n, ts in times.items()),
        "",
        f"**TextSASRec / SASRec = {text / base:.2f}x** (best epoch of each; target <= 1.3x); "
        f"per round: {', '.join(f'{t / b:.2f}x' for b, t in zip(times['SASRec'], times['TextSASRec']))}",
        f"**Evaluation: {etext / ebase:.2f}x** (best of each; target <= 1.3x); per round: "
        f"{', '.join(f'{t / b:.2f}x' for b, t in zip(evals['SASRec'], evals['TextSASRec']))}",
        "",
    ]
    os.makedirs(os.path.dirname(RESULTS), exist_ok=True)
    with open(RESULTS, "a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
