"""A real Ray Tune search for TextSASRec on Games, recorded in benchmarks/results/tune_games.md.

Runs `python -m recbole_llm2rec.tune` (ASHA, random search) with a budget that fits a small
CPU machine, then records the machine, the command, the wall time, the results table, the
best config, and what the dataset cache saves per trial. Every `Games.<name>.feat` found in
the dataset folder becomes a choice of `text_emb`.

    python -m benchmarks.tune_games --data_path dataset/ --num-samples 8 --epochs 2 --cpus 1
"""
import argparse
import glob
import os
import platform
import sys
import tempfile
import time

import yaml

from recbole_llm2rec import tune
from recbole_llm2rec.feat import atomic_write_text, dataset_folder, missing_feat
from recbole_llm2rec.props import default
from recbole_llm2rec.yaml_file import read_yaml, recbole_loader

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULT = os.path.join(REPO, "benchmarks", "results", "tune_games.md")


def feat_names(data_path, dataset):
    """Names of the `.feat` files of `dataset`, e.g. ['minilm', 'smollm2']."""
    pattern = os.path.join(dataset_folder(data_path, dataset), f"{dataset}.*.feat")
    return sorted(os.path.basename(p)[len(dataset) + 1:-len(".feat")] for p in glob.glob(pattern))


def dataset_load_times(model, dataset, overrides, cache):
    """Seconds to build the dataset from the atomic files, and to load it from the cache.

    Returns (build s, load s, the dataset)."""
    from recbole.data import create_dataset

    from recbole_llm2rec.quick_start import build_config

    config, _ = build_config(model, dataset, overrides=overrides)
    with tempfile.TemporaryDirectory() as empty:
        config["checkpoint_dir"] = empty  # no cache here: RecBole builds from the files
        start = time.time()
        data = create_dataset(config)
        built = time.time() - start
    config["dataset_save_path"] = cache
    start = time.time()
    create_dataset(config)
    return built, time.time() - start, data


def cpu_name():
    try:
        with open("/proc/cpuinfo") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if "model name" in line)
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_path", default="dataset/")
    p.add_argument("--dataset", default="Games", help="(a small slice for a dry run)")
    p.add_argument("--space", default="props/tune/TextSASRec.yaml")
    p.add_argument("--num-samples", type=int, default=8)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--cpus", type=float, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", default="saved/tune/TextSASRec-Games")
    p.add_argument("--result", default=RESULT, help="markdown file to write")
    args = p.parse_args(argv)

    names = feat_names(args.data_path, args.dataset)
    if not names:
        raise missing_feat(args.data_path, args.dataset, default("text_emb"))
    space = read_yaml(args.space, loader=recbole_loader())
    space["text_emb"] = {"choice": names}
    space_file = os.path.join(tempfile.mkdtemp(), "TextSASRec-Games.yaml")
    atomic_write_text(space_file, lambda fh: yaml.safe_dump(space, fh, sort_keys=False))

    tune_args = ["--model", "TextSASRec", "--dataset", args.dataset, "--space", space_file,
                 "--num-samples", str(args.num_samples), "--cpus", f"{args.cpus:g}",
                 "--seed", str(args.seed), "--output", args.output,
                 f"--data_path={args.data_path}", f"--epochs={args.epochs}"]
    shown = ["python -m recbole_llm2rec.tune"] + [args.space if a == space_file else a
                                                   for a in tune_args]
    load_before = os.getloadavg()
    start = time.time()
    table = tune.main(tune_args)
    wall = time.time() - start
    load_after = os.getloadavg()

    cache = glob.glob(os.path.join(args.output, "dataset_cache", "*.pth"))[0]
    built, loaded, data = dataset_load_times("TextSASRec", args.dataset,
                                             {"data_path": args.data_path}, cache)
    with open(os.path.join(args.output, "results.md"), encoding="utf-8") as fh:
        results_md = fh.read()
    with open(os.path.join(args.output, "best_config.yaml"), encoding="utf-8") as fh:
        best_yaml = fh.read()
    counts = table["status"].value_counts().to_dict()
    busy = table["time_s"].sum()

    lines = [
        f"# Ray Tune search: TextSASRec on {args.dataset} (ASHA, CPU machine)",
        "",
        f"Reproduce: `python -m benchmarks.tune_games --data_path {args.data_path} "
        f"--dataset {args.dataset} "
        f"--num-samples {args.num_samples} --epochs {args.epochs} --cpus {args.cpus:g} "
        f"--seed {args.seed}`",
        "",
        "## Setup",
        "",
        f"- Machine: {os.cpu_count()} CPU cores ({cpu_name()}), no GPU, Python "
        f"{platform.python_version()}; shared with other jobs: load average "
        f"{load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end.",
        f"- Command: `{' '.join(shown)}`",
        f"- Space: `props/tune/TextSASRec.yaml` with `text_emb` over the `.feat` files found "
        f"({', '.join(names)}); {args.num_samples} random trials (seed {args.seed}), "
        f"{args.cpus:g} CPU each, so {int((os.cpu_count() or 1) // args.cpus)} at a time; "
        f"`epochs={args.epochs}` per trial; ASHA on the validation metric, grace period 1, "
        f"reduction factor 2; the rest from `props/`. {args.dataset}: {data.user_num - 1:,} "
        f"users, {data.item_num - 1:,} items, {data.inter_num:,} interactions.",
        "",
        "## Outcome",
        "",
        f"- Wall time: **{wall / 60:.1f} min** for {len(table)} trials "
        f"({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}); trial time summed: "
        f"{busy / 60:.1f} min.",
        f"- Dataset loading: building {args.dataset} from the atomic files takes {built:.2f} s, "
        f"loading "
        f"the search's cache {loaded:.2f} s; every trial loads the cache (RecBole's "
        f"split/augmentation step still runs in each trial).",
        "",
        "Trials, best first (`stopped` = stopped early by ASHA, no test run):",
        "",
        results_md.rstrip(),
        "",
        "Best configuration (`best_config.yaml`):",
        "",
        "```yaml",
        best_yaml.rstrip(),
        "```",
        "",
        "## The same search on a Ray cluster",
        "",
        "```bash",
        "ray start --head   # then on each worker node: ray start --address=<head-ip>:6379",
        "python -m recbole_llm2rec.tune --address auto --model TextSASRec --dataset Games \\",
        "    --space props/tune/TextSASRec.yaml --num-samples 64 --gpus 1 \\",
        "    --output /shared/tune/TextSASRec-Games --data_path=/shared/dataset/ --epochs=200",
        "```",
        "",
        "(One GPU per trial and the node's CPUs split per GPU by default; the plugin installed "
        "on every node; data and output on shared storage; see docs/tune.md.)",
        "",
    ]
    atomic_write_text(args.result, lambda fh: fh.write("\n".join(lines)))
    print(f"wrote {args.result}")


if __name__ == "__main__":
    from recbole_llm2rec.errors import cli_main

    cli_main(main, "python -m benchmarks.tune_games", sys.argv[1:])  # the tuner's bad input: one line
