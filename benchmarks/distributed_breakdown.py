"""Where a two-process CPU step goes: compute of one micro-batch (forward + backward) against
the gradient all-reduce, for a causal LM (SmolLM2-135M by default), one torch thread each.

    OMP_NUM_THREADS=1 python -m benchmarks.distributed_breakdown --model models/SmolLM2-135M-Instruct
    OMP_NUM_THREADS=1 torchrun --nproc_per_node=2 -m benchmarks.distributed_breakdown --model ...

Each process runs `--steps` forward+backward passes of a fixed random batch (`--batch` x
`--length` tokens) and times them, then times `--steps` all-reduces of a float32 buffer the
size of the model's gradients (what DDP sends each step; gloo on CPU). Prints one json line per
process: median seconds of each.
"""
import argparse
import json
import statistics
import time

import torch

from pretrain import ranks


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.distributed_breakdown")
    p.add_argument("--model", default="models/SmolLM2-135M-Instruct")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=64)
    p.add_argument("--steps", type=int, default=4)
    args = p.parse_args(argv)
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(args.model, attn_implementation="sdpa")
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(model.config.vocab_size, (args.batch, args.length), generator=gen)
    compute = []
    for _ in range(args.steps + 1):  # the first one warms up
        start = time.perf_counter()
        model(input_ids=ids, labels=ids).loss.backward()
        compute.append(time.perf_counter() - start)
    record = {"rank": ranks.rank(), "processes": ranks.world_size(),
              "compute_s": statistics.median(compute[1:])}
    if ranks.init():
        grads = torch.zeros(sum(p.numel() for p in model.parameters()))
        reduce = []
        for _ in range(args.steps + 1):
            ranks.barrier()
            start = time.perf_counter()
            torch.distributed.all_reduce(grads)
            reduce.append(time.perf_counter() - start)
        record.update(all_reduce_s=statistics.median(reduce[1:]),
                      all_reduce_mb=round(grads.numel() * 4 / 2 ** 20))
    print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
