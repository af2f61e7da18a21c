"""Peak memory and CPU time of one LLMSRec training step, with and without gradient checkpointing
of the frozen LLM (`llmsrec_gradient_checkpointing`).

    python -m benchmarks.llmsrec_memory --data_path=dataset/ --dataset=Games500 \
        --llm_path=models/SmolLM2-135M-Instruct --teacher_checkpoint=saved/SASRec-....pth \
        --examples 4 8

Each (checkpointing, examples) pair runs in its own process, since a process's peak resident
set size (`ru_maxrss`) only grows: the model is built, then one forward + backward runs on the
first `examples` training examples (each user's last training item, the default mode), after
one pass without gradients on the same batch (the first LM passes' one-time allocations). The
step's cost is the peak RSS after the step minus the peak before it. One torch thread; CPU
seconds by `time.process_time`. The table goes to `benchmarks/results/llmsrec_memory.md`
(+ `.json`).
"""
import argparse
import json
import os
import resource
import shlex
import subprocess
import sys
import time

from benchmarks.llmsrec_cost import add_run_args, timed
from benchmarks.machine import machine
from recbole_llm2rec.feat import atomic_write_text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

OUT = os.path.join(ROOT, "benchmarks", "results", "llmsrec_memory")


def peak_mib():
    """This process's peak resident set size so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_step(args, checkpointing, examples):
    """Build the model and run one training step; returns the measurements (a dict)."""
    import torch
    from recbole.data import create_dataset, data_preparation

    from recbole_llm2rec.quick_start import build_config

    torch.set_num_threads(1)
    config, cls = build_config("LLMSRec", args.dataset, config_dict={
        "data_path": args.data_path, "llm_path": args.llm_path,
        "teacher_checkpoint": args.teacher_checkpoint, "show_progress": False,
        "MAX_ITEM_LIST_LENGTH": args.history, "llmsrec_gradient_checkpointing": checkpointing})
    train, _, _ = data_preparation(config, create_dataset(config))
    net = cls(config, train._dataset)
    data = train._dataset.inter_feat
    batch = data[net.training_rows(data)[:examples]]
    with torch.no_grad():  # one-time allocations of the first LM passes are not the step's
        net.calculate_loss(batch)
    before = peak_mib()
    _, cpu, wall = timed(lambda: sum(net.calculate_loss(batch)).backward())
    after = peak_mib()
    return {"checkpointing": checkpointing, "examples": examples,
            "prompt_tokens": sum(map(len, net.user_prompts(batch)[0])),
            "peak_before_step_mib": round(before), "peak_after_step_mib": round(after),
            "step_mib": round(after - before), "step_cpu_s": round(cpu, 1),
            "step_wall_s": round(wall, 1)}


def table(rows):
    """Markdown table of the measurements."""
    lines = ["| checkpointing | examples | user-prompt tokens | peak RSS before step, after a "
             "no-grad pass (MiB) | peak RSS after step (MiB) | step's increase (MiB) | "
             "step CPU s | step wall s |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['checkpointing']} | {r['examples']} | {r['prompt_tokens']} | "
              f"{r['peak_before_step_mib']} | {r['peak_after_step_mib']} | {r['step_mib']} | "
              f"{r['step_cpu_s']} | {r['step_wall_s']} |" for r in rows]
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_run_args(p)
    p.add_argument("--history", type=int, default=5, help="MAX_ITEM_LIST_LENGTH")
    p.add_argument("--examples", type=int, nargs="+", default=[4, 8])
    p.add_argument("--one", nargs=2, metavar=("CHECKPOINTING", "EXAMPLES"),
                   help="(internal) measure one setting in this process and print it as json")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one_step(args, args.one[0] == "True", int(args.one[1]))))
        return
    import torch

    torch.set_num_threads(1)  # as the measured processes (machine() reports it)
    rows = []
    for examples in args.examples:
        for checkpointing in (False, True):
            cmd = [sys.executable, "-m", __spec__.name, *argv,
                   "--one", str(checkpointing), str(examples)]
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                [ROOT] + [p for p in [os.environ.get("PYTHONPATH")] if p]))
            out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                                 env=env).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
            print(rows[-1], flush=True)
    record = {"dataset": args.dataset, "llm": os.path.basename(os.path.normpath(args.llm_path)),
              "history_length": args.history, "rows": rows,
              "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
              "command": "python -m benchmarks.llmsrec_memory " + shlex.join(argv)}
    atomic_write_text(OUT + ".json", lambda fh: json.dump(record, fh, indent=1))
    atomic_write_text(OUT + ".md", lambda fh: fh.write(
        f"# LLMSRec: memory of one training step, with and without gradient checkpointing\n\n"
        f"{record['llm']} on {args.dataset}, history length {args.history}, one torch thread, "
        f"float32 on CPU; {record['machine']}; {record['finished']}.\n\n"
        f"```\n{record['command']}\n```\n\n{table(rows)}\n"))


if __name__ == "__main__":
    main()
