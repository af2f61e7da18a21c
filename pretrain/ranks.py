"""The processes of a `torchrun` launch: who is who, waiting, and the collectives the stages and
extraction use. Without torchrun (no WORLD_SIZE, or 1) every helper is the single-process
identity, so the same code runs in one process and in several.

The backend is chosen from the device: `nccl` with CUDA, `gloo` without (the same collective
code, so two CPU processes exercise what eight GPUs run).
"""
import os

import torch
import torch.distributed as dist


def world_size():
    """Number of processes of the launch (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank():
    """This process's rank (0 without torchrun)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process():
    """True in a single process and in rank 0 of a torchrun launch: the one writer."""
    return rank() == 0


def backend():
    """`nccl` when CUDA is available, else `gloo`."""
    return "nccl" if torch.cuda.is_available() else "gloo"


def device():
    """This process's device: `cuda:<LOCAL_RANK>` with CUDA, else cpu."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def init():
    """Join the launch's process group (once; the HF Trainer joins the same group). Returns
    True when there are several processes."""
    if world_size() == 1:
        return False
    if not dist.is_initialized():
        if torch.cuda.is_available():
            torch.cuda.set_device(device())
        dist.init_process_group(backend=backend())
    return True


def share(items):
    """This process's share of `items`: every world-th one from its rank on (all of them in a
    single process). On a length-sorted list, every process gets long and short ones alike."""
    return list(items)[rank()::world_size()]


def barrier():
    """Wait for every process of the launch; nothing in a single process."""
    if init():
        dist.barrier()


def all_reduce_sum(value, on=None):
    """Sum of the float `value` over all processes (itself in a single process)."""
    if not init():
        return float(value)
    total = torch.tensor([float(value)], dtype=torch.float64, device=on or device())
    dist.all_reduce(total)
    return float(total.item())


def average_gradients(parameters):
    """Average the `.grad` of `parameters` (outside the DDP-wrapped model, e.g. SCFT's
    temperature) over all processes, as DDP does for the model's."""
    if not init():
        return
    for p in parameters:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world_size()


class _GatherRows(torch.autograd.Function):
    """All-gather of equal-sized row blocks whose backward hands every process the gradient of
    its own rows summed over all processes: the gradient of the computation on the concatenated
    batch, as if it ran in one process."""

    @staticmethod
    def forward(ctx, rows):
        ctx.start, ctx.stop = rank() * rows.shape[0], (rank() + 1) * rows.shape[0]
        parts = [torch.empty_like(rows) for _ in range(world_size())]
        dist.all_gather(parts, rows.contiguous())
        parts[rank()] = rows  # the same values; keeps the output on this rank's tensor
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[ctx.start:ctx.stop]


def gather_rows(rows):
    """Rows [B, H] of every process concatenated in rank order [world x B, H], differentiable
    (every process's rows get the gradient of the whole computation), and this process's row
    offset in it. Every process must pass the same B. Just (rows, 0) in a single process."""
    if not init():
        return rows, 0
    return _GatherRows.apply(rows), rank() * rows.shape[0]


def gather_to_main(obj):
    """Rank 0: the list of every process's `obj`, in rank order; other ranks: None. `[obj]` in
    a single process."""
    if not init():
        return [obj]
    out = [None] * world_size() if is_main_process() else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast_from_main(obj):
    """Rank 0's `obj` on every process (itself in a single process)."""
    if not init():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
