"""SASRec (the teacher), TextSASRec and LLMSRec on one dataset sample: test Recall/NDCG@10, test
Recall@10 with every test history randomly permuted (the LLM-SRec paper's shuffle test), and wall
time per epoch.

    python -m benchmarks.llmsrec_comparison --data_path=dataset/ --dataset=Games500 \
        --llm_path=models/SmolLM2-135M-Instruct --seeds 2020 --llmsrec_seeds 2020

Each seed trains SASRec, then TextSASRec (`--text_emb`, default the MiniLM table), then LLMSRec
with that seed's SASRec checkpoint as its teacher. All share `--set key=value` overrides (the
history length by default: MAX_ITEM_LIST_LENGTH=5). Every finished (model, seed) is written to
`benchmarks/results/llmsrec/<model>.<dataset>.seed<k>.json` at once and skipped on the next
start, so a killed benchmark resumes; the table goes to `benchmarks/results/llmsrec.md`
(with the cost records of `llmsrec_cost.py` and the hand-written `llmsrec/notes.md`).
"""
import argparse
import glob
import json
import logging
import os
import re
import shlex
import statistics
import sys
import time

from benchmarks.machine import machine
from recbole_llm2rec.feat import atomic_write_text
from recbole_llm2rec.props import default

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

RESULTS = os.path.join(ROOT, "benchmarks", "results")
RUNS = os.path.join(RESULTS, "llmsrec")
REPORT = os.path.join(RESULTS, "llmsrec.md")
EPOCH_LINE = re.compile(r"epoch (\d+) (training|evaluating) \[time: ([\d.]+)s")
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # RecBole colours its console messages


class EpochTimes(logging.Filter):
    """Collects RecBole's 'epoch N training/evaluating [time: Xs' log lines (a filter on the
    root logger, RecBole's logger: `quick_start.run` replaces the root handlers, not filters)."""

    def __init__(self):
        super().__init__()
        self.times = {}

    def filter(self, record):
        self.add(record.getMessage())
        return True

    def add(self, line):
        for epoch, phase, seconds in EPOCH_LINE.findall(ANSI.sub("", line)):
            self.times.setdefault(int(epoch), {})[phase] = float(seconds)

    def per_epoch(self):
        """Mean seconds of (training, validation) per epoch, and the number of epochs."""
        train = [t["training"] for t in self.times.values() if "training" in t]
        valid = [t["evaluating"] for t in self.times.values() if "evaluating" in t]
        mean = lambda xs: round(sum(xs) / len(xs), 1) if xs else None  # noqa: E731
        return {"train_s": mean(train), "valid_s": mean(valid), "epochs": len(train)}


def evaluate_shuffled(model, dataset, config_dict, model_file, seed):
    """Test metrics of a saved model when every test history is permuted."""
    from recbole.data import create_dataset, data_preparation

    from recbole_llm2rec.compat import get_trainer
    from recbole_llm2rec.evaluation.shuffle import shuffle_histories
    from recbole_llm2rec.quick_start import build_config

    config, cls = build_config(model, dataset, config_dict=config_dict)
    _, _, test_data = data_preparation(config, create_dataset(config))
    dataset = test_data._dataset  # every test history permuted, timestamps kept in place
    dataset.inter_feat = shuffle_histories(dataset.inter_feat, config, seed)
    net = cls(config, test_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    start = time.time()
    result = trainer.evaluate(test_data, load_best_model=True, model_file=model_file,
                              show_progress=config["show_progress"])
    return {k: float(v) for k, v in result.items()}, round(time.time() - start, 1)


def run_one(model, args, seed, config_dict):
    """Train one model, test it plain and shuffled; returns its record."""
    from recbole_llm2rec.quick_start import run

    times, start = EpochTimes(), time.time()
    logging.getLogger().addFilter(times)
    try:
        out = run(model, args.dataset, config_dict=config_dict)
    finally:
        logging.getLogger().removeFilter(times)
    model_file, test = out["model_file"], {k: float(v) for k, v in out["test_result"].items()}
    shuffled, shuffle_s = evaluate_shuffled(model, args.dataset, config_dict, model_file, seed)
    return {"model": model, "dataset": args.dataset, "seed": seed, "test": test,
            "shuffled_test": shuffled, "shuffle_eval_s": shuffle_s, **times.per_epoch(),
            "model_file": os.path.basename(model_file), "wall_s": round(time.time() - start, 1),
            "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "command": "python -m benchmarks.llmsrec_comparison " + shlex.join(sys.argv[1:])}


def mean_std(values):
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def write_report():
    records = [json.load(open(p, encoding="utf-8"))
               for p in sorted(glob.glob(f"{RUNS}/*.seed*.json"))]
    lines = ["# SASRec, TextSASRec and LLMSRec: plain and shuffled test histories", "",
             "Written by `benchmarks/llmsrec_comparison.py` from the run files in `llmsrec/`. "
             "Full ranking over all items. *shuffled*: every test history randomly permuted "
             "(items only; the per-position timestamps stay in place, so LLMSRec's "
             "\"Item No.k, Time\" slots keep their dates). Times are wall seconds per epoch on a "
             "shared CPU (see each run's `machine`).", "",
             "| model | dataset | seed | R@10 | N@10 | R@10 shuffled | change | epochs | "
             "train s/epoch | valid s/epoch |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in records:
        base, shuf = r["test"]["recall@10"], r["shuffled_test"]["recall@10"]
        change = f"{(shuf - base) / base:+.0%}" if base else "n/a"
        lines.append(f"| {r['model']} | {r['dataset']} | {r['seed']} | {base:.4f} | "
                     f"{r['test']['ndcg@10']:.4f} | {shuf:.4f} | {change} | {r['epochs']} | "
                     f"{r['train_s']} | {r['valid_s']} |")
    groups = {}
    for r in records:
        groups.setdefault((r["model"], r["dataset"]), []).append(r)
    means = [(key, runs) for key, runs in sorted(groups.items()) if len(runs) > 1]
    if means:
        lines += ["", "Mean ± sample standard deviation over seeds:", "",
                  "| model | dataset | seeds | R@10 | N@10 | R@10 shuffled |",
                  "|---|---|---:|---:|---:|---:|"]
        for (model, dataset), runs in means:
            cells = [mean_std([r[part][m] for r in runs]) for part, m in
                     (("test", "recall@10"), ("test", "ndcg@10"), ("shuffled_test", "recall@10"))]
            lines.append(f"| {model} | {dataset} | {len(runs)} | "
                         + " | ".join(f"{mu:.4f} ± {sd:.4f}" for mu, sd in cells) + " |")
    lines += ["", "Commands:", ""] + sorted({f"    {r['command']}" for r in records})
    for path in sorted(glob.glob(f"{RUNS}/cost.*.json")):
        lines += [""] + cost_lines(json.load(open(path, encoding="utf-8")))
    notes = os.path.join(RUNS, "notes.md")  # hand-written: what was cut and why
    if os.path.isfile(notes):
        lines += ["", open(notes, encoding="utf-8").read().rstrip()]
    atomic_write_text(REPORT, lambda fh: fh.write("\n".join(lines) + "\n"))


def cost_lines(cost):
    """Markdown for one `llmsrec_cost.py` record."""
    m, unit = cost["measured"], cost["per_unit_cpu_s"]
    lines = [f"## LLMSRec cost ({cost['llm']}, history {cost['history_length']}, measured on "
             f"{cost['dataset']})", "",
             f"One torch thread, CPU seconds (`time.process_time`, not inflated by other jobs): "
             f"a training step on {m['train_step_users']} users (forward + backward through the "
             f"frozen LLM) {m['train_step_cpu_s']} s, {m['items_timed']} catalogue items "
             f"{m['items_cpu_s']} s, {m['users_timed']} evaluation user prompts "
             f"{m['users_cpu_s']} s; per unit: training example {unit['train_example']} s, "
             f"catalogue item {unit['item']} s, evaluation user {unit['eval_user']} s. "
             f"Wall seconds of the same on the shared machine: {m['train_step_wall_s']}, "
             f"{m['items_wall_s']}, {m['users_wall_s']}.", "",
             "| dataset | users | items | training examples/epoch | train CPU s | "
             "validation CPU s | epoch CPU h |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, e in cost["estimates"].items():
        c = e["cpu_1_thread"]
        lines.append(f"| {name} | {e['users']} | {e['items']} | {e['train_examples']} | "
                     f"{c['train_s']} | {c['eval_s']} | {c['epoch_s'] / 3600:.2f} |")
    lines += ["", "A test evaluation costs what a validation costs (and the shuffled test as "
              "much again). Command:", "", f"    {cost['command']}"]
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_path", required=True)
    p.add_argument("--dataset", default="Games500")
    p.add_argument("--llm_path", help="local HF folder of the LLM (LLMSRec)")
    p.add_argument("--text_emb", default=default("text_emb"),
                   help="TextSASRec's .feat (default: props/overall.yaml's)")
    p.add_argument("--seeds", type=int, nargs="+", default=[2020])
    p.add_argument("--llmsrec_seeds", type=int, nargs="*", default=[2020],
                   help="seeds (among --seeds) that also train LLMSRec")
    p.add_argument("--models", nargs="+", default=["SASRec", "TextSASRec", "LLMSRec"])
    p.add_argument("--llmsrec_epochs", type=int, default=3, help="LLMSRec's epoch cap")
    p.add_argument("--set", nargs="*", default=["MAX_ITEM_LIST_LENGTH=5"],
                   help="key=value overrides for every model")
    p.add_argument("--report", action="store_true", help="only rewrite the table")
    args = p.parse_args(argv)
    if not args.report:
        os.makedirs(RUNS, exist_ok=True)
        common = {"data_path": args.data_path, **{k: yaml_value(v) for k, v in
                                                  (s.split("=", 1) for s in args.set)}}
        for seed in args.seeds:
            teacher = None
            for model in args.models:
                path = os.path.join(RUNS, f"{model}.{args.dataset}.seed{seed}.json")
                config = {**common, "seed": seed}
                if model == "TextSASRec":
                    config["text_emb"] = args.text_emb
                if model == "LLMSRec":
                    if seed not in args.llmsrec_seeds:
                        continue
                    config.update(llm_path=args.llm_path, teacher_checkpoint=teacher,
                                  epochs=args.llmsrec_epochs)
                record = json.load(open(path, encoding="utf-8")) if os.path.isfile(path) else None
                if record and model == "SASRec" and teacher_wanted(args, seed) and not \
                        os.path.isfile(checkpoint_path(config, record)):
                    record = None  # its checkpoint is gone and LLMSRec needs it as the teacher
                if record is None:
                    record = run_one(model, args, seed, config)
                    atomic_write_text(path, lambda fh: json.dump(record, fh, indent=1))
                if model == "SASRec":
                    teacher = checkpoint_path(config, record)
                write_report()
    write_report()


def checkpoint_path(config, record):
    return os.path.join(config.get("checkpoint_dir", "saved"), record["model_file"])


def teacher_wanted(args, seed):
    return "LLMSRec" in args.models and seed in args.llmsrec_seeds


def yaml_value(text):
    import yaml

    return yaml.safe_load(text)


if __name__ == "__main__":
    main()
