"""TextSASRec with different item-embedding files, several seeds each: mean ± std of the test metrics.

    python benchmarks/embedding_comparison.py --datasets Games2k Beauty2k \
        --text_embs smollm2 llm2rec --seeds 0 1 2 --data_path dataset/

Every (dataset, text_emb, seed) run is a plain `recbole_llm2rec.quick_start.run` with
`benchmarks/configs/seed_comparison.yaml` layered over the props, then the `--set` settings; its
result is written to `benchmarks/results/<name>/<model>.<dataset>.<text_emb>[.<variant>].seed<k>.json`
(`--name`, default embedding_comparison; `--variant` labels the `--set` settings, e.g.
`--variant text+id --set item_repr=text+id`) as soon as it ends, and runs whose file exists are
skipped, so a killed benchmark resumes and several processes can share the work (give them
different --datasets/--seeds). `--model SASRec` runs the ID-based reference point (text_emb "-").
The table of all finished runs goes to `benchmarks/results/<name>.md` (`--report` writes only it),
followed by the hand-written `benchmarks/results/<name>.notes.md` if there is one.
"""
import argparse
import glob
import json
import os
import shlex
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
from machine import machine  # noqa: E402
from recbole_llm2rec.feat import atomic_write_text  # noqa: E402

RESULTS = os.path.join(ROOT, "benchmarks", "results")
PROTOCOL = os.path.join(ROOT, "benchmarks", "configs", "seed_comparison.yaml")
METRICS = ("recall@10", "ndcg@10", "recall@20", "ndcg@20")
VALID_METRIC = "recall@20"  # props/overall.yaml's valid_metric


def run_one(model, dataset, text_emb, seed, data_path, overrides, variant="-"):
    """Train and test one model; returns the record written for it."""
    from recbole_llm2rec.quick_start import run

    start, valid_curve = time.time(), []
    config = {"data_path": data_path, "seed": seed, **({} if text_emb == "-" else {"text_emb": text_emb})}
    out = run(model, dataset, config_file_list=[PROTOCOL], config_dict=config, overrides=overrides,
              callback_fn=lambda epoch, result: valid_curve.append(float(result[VALID_METRIC])))
    return {
        "model": model, "dataset": dataset, "text_emb": text_emb, "variant": variant, "seed": seed,
        "overrides": overrides,
        "test": {k: float(v) for k, v in out["test_result"].items()},
        "best_valid": {k: float(v) for k, v in out["best_valid_result"].items()},
        "epochs_run": len(valid_curve),
        "best_epoch": 1 + valid_curve.index(max(valid_curve)) if valid_curve else None,
        "valid_curve": valid_curve,
        "wall_s": round(time.time() - start, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "command": "python benchmarks/embedding_comparison.py " + shlex.join(sys.argv[1:]),
    }


def mean_std(values):
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def paths(name):
    """(folder of run files, report) of the comparison called `name`."""
    return os.path.join(RESULTS, name), os.path.join(RESULTS, f"{name}.md")


def run_path(runs, model, dataset, emb, variant, seed):
    """One run's file: <model>.<dataset>.<text_emb>[.<variant>].seed<k>.json."""
    parts = [model, dataset, emb] + ([] if variant == "-" else [variant]) + [f"seed{seed}"]
    return os.path.join(runs, ".".join(parts) + ".json")


def write_report(name="embedding_comparison"):
    """Aggregate every run file into the markdown table (mean ± sample std over seeds)."""
    runs, report = paths(name)
    records = [json.load(open(p, encoding="utf-8")) for p in sorted(glob.glob(f"{runs}/*.json"))]
    groups = {}
    for r in records:
        groups.setdefault((r["model"], r["dataset"], r["text_emb"], r.get("variant", "-")),
                          []).append(r)
    lines = ["# Item embeddings compared downstream (TextSASRec, several seeds)", "",
             f"Written by `benchmarks/embedding_comparison.py` from the run files in "
             f"`{name}/`; mean ± sample standard deviation over seeds of the "
             "test metrics (full ranking). Protocol: `benchmarks/configs/seed_comparison.yaml` "
             "over `props/`.", "",
             "`epochs` is the mean number of epochs run and, in brackets, the mean best "
             "(validation) epoch; a run that reached the `epochs` cap may not have converged.", "",
             "| model | dataset | text_emb | variant | seeds | " + " | ".join(METRICS)
             + " | epochs (best) | mean wall s |",
             "|---|---|---|---|---:|" + "---:|" * len(METRICS) + "---:|---:|"]
    for (model, dataset, emb, variant), runs in sorted(groups.items()):
        cells = []
        for m in METRICS:
            mu, sd = mean_std([r["test"][m] for r in runs])
            cells.append(f"{mu:.4f} ± {sd:.4f}")
        wall = statistics.mean(r["wall_s"] for r in runs)
        epochs = statistics.mean(r["epochs_run"] for r in runs)
        best = statistics.mean(1 + r["valid_curve"].index(max(r["valid_curve"])) for r in runs)
        lines.append(f"| {model} | {dataset} | {emb} | {variant} | {len(runs)} | " + " | ".join(cells)
                     + f" | {epochs:.0f} ({best:.0f}) | {wall:.0f} |")
    notes = os.path.join(RESULTS, f"{name}.notes.md")  # hand-written: data, cuts, conclusions
    if os.path.exists(notes):
        lines += ["", open(notes, encoding="utf-8").read().rstrip()]
    lines += ["", "## Runs", ""]
    lines += [f"- {r['model']} {r['dataset']} {r['text_emb']} {r.get('variant', '-')} seed {r['seed']}: test "
              + ", ".join(f"{m} {r['test'][m]:.4f}" for m in METRICS)
              + f"; {r['epochs_run']} epochs, {r['wall_s']:.0f} s, {r['finished']}, {r['machine']}; "
              f"`{r['command']}`" for r in records]
    atomic_write_text(report, lambda fh: fh.write("\n".join(lines) + "\n"))
    return report


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="TextSASRec")
    p.add_argument("--datasets", nargs="+", default=["Games2k", "Beauty2k"])
    p.add_argument("--text_embs", nargs="+", default=["smollm2", "llm2rec"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--data_path", default="dataset/")
    p.add_argument("--name", default="embedding_comparison",
                   help="comparison name: run files in benchmarks/results/<name>/, table in <name>.md")
    p.add_argument("--variant", default="-",
                   help="label of the --set settings (e.g. text+id), part of each run's file name")
    p.add_argument("--report", action="store_true", help="only rewrite the report")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="extra RecBole setting (repeatable), e.g. --set epochs=20")
    args = p.parse_args(argv)
    for kv in args.set:
        if "=" not in kv or kv.startswith("="):
            p.error(f"--set needs KEY=VALUE, got {kv!r}")
    if not args.report:
        from recbole_llm2rec.quick_start import parse_overrides

        extra = parse_overrides([f"--{kv}" for kv in args.set])
        runs = paths(args.name)[0]
        os.makedirs(runs, exist_ok=True)
        # an ID-based model (e.g. SASRec, the reference point) has no embedding file to vary
        embs = args.text_embs if args.model.startswith("Text") else ["-"]
        for dataset in args.datasets:
            for emb in embs:
                for seed in args.seeds:
                    path = run_path(runs, args.model, dataset, emb, args.variant, seed)
                    if os.path.exists(path):
                        print(f"done already: {path}")
                        continue
                    record = run_one(args.model, dataset, emb, seed, args.data_path, extra,
                                     args.variant)
                    atomic_write_text(path, lambda fh: json.dump(record, fh, indent=1))
                    print(f"{args.model} {dataset} {emb} seed {seed}: {record['test']}", flush=True)
                    write_report(args.name)
    print(write_report(args.name))


if __name__ == "__main__":
    try:
        main()
    except (ValueError, FileNotFoundError) as err:  # bad input: one clear line, no traceback
        sys.exit(f"embedding_comparison.py: error: {err}")
