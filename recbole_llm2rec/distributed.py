"""RecBole's multi-process training (`nproc > 1`) on any device: gloo on CPUs, nccl on GPUs.

RecBole 1.2.1 trains with DistributedDataParallel when a run has a `local_rank` (one process per
device, started by `torch.multiprocessing.spawn`), but:

1. `Config._init_device` starts the process group with nccl only and puts every rank on a GPU;
   `init_process_group` here picks gloo and the CPU when there is no GPU to use.
2. The trainer builds `DistributedDataParallel(model, device_ids=[rank])`, which torch refuses
   for a model on the CPU (device ids are for GPU modules).
3. Its evaluation averages each rank's rounded metrics, weighted by each rank's share, and
   `DistributedSampler` pads the shares to equal length by repeating the first users: users are
   counted twice and the metrics differ from one process's. `ShardCollector` gathers the ranks'
   per-user results instead, drops the padding and puts them back in the single-process order,
   so every rank computes the metrics of exactly the users one process would evaluate.
4. Each rank names its best checkpoint after its own clock; rank 1 then tests a file rank 0
   never wrote. Rank 0's name is broadcast, and the others wait until it is written.
"""
import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import recbole.trainer.trainer as _recbole_trainer
from recbole.evaluator import Collector

from recbole_llm2rec.errors import InputError

# Keys a launcher adds to one rank's config_dict: how to reach the group, not what to train.
# Checkpoints leave them out, so a run reloads or resumes with any number of processes.
LAUNCH_KEYS = ("local_rank", "world_size", "nproc", "ip", "port", "offset")
# Per-user rows of RecBole's evaluation data (`Collector.get_data_struct`).
_PER_USER = ("rec.topk", "rec.meanrank", "rec.score", "rec.items", "data.label")


def without_launch_keys(values):
    """`values` (a dict) without `LAUNCH_KEYS`. Returns a new dict."""
    return {k: v for k, v in values.items() if k not in LAUNCH_KEYS}


def free_port():
    """A TCP port free on this machine now, for a one-machine group's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(worker, kwargs, nproc, world_size=-1, ip="localhost", port=None, offset=0):
    """Run `worker(**kwargs)` in `nproc` new processes, ranks offset..offset + nproc - 1 of a
    group of `world_size` (default nproc) meeting at ip:port; each gets the `LAUNCH_KEYS` in its
    `kwargs["config_dict"]`. Returns what rank 0 returned (None on the other machines); any
    rank's exception stops them all and is raised here (torch's ProcessRaisedException)."""
    world_size = world_size if world_size > 0 else nproc
    if port is None:
        if world_size > nproc:
            raise InputError(f"a group of {world_size} processes on several machines (nproc "
                             f"{nproc} here) needs the port of rank 0's machine (--port)",
                             field="port", value=None)
        port = free_port()
    launch = {"world_size": world_size, "nproc": nproc, "ip": ip, "port": port, "offset": offset}
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_rank_main, args=(worker, kwargs, launch, queue), nprocs=nproc, join=True)
    return None if queue.empty() else queue.get()


def _rank_main(local_rank, worker, kwargs, launch, queue):
    # the machine's CPU threads shared out: nproc processes of all threads would contend
    torch.set_num_threads(max(1, torch.get_num_threads() // launch["nproc"]))
    config_dict = {**(kwargs.get("config_dict") or {}), **launch, "local_rank": local_rank}
    try:
        result = worker(**{**kwargs, "config_dict": config_dict})
        if local_rank + launch["offset"] == 0:
            queue.put(result)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def check_launch(config, nproc):
    """Before starting `nproc` processes of a run whose one-process `config` is given: on GPUs,
    one per process (`gpu_id` lists them; RecBole writes it to CUDA_VISIBLE_DEVICES)."""
    gpu_id = str(config["gpu_id"] or "")
    if config["device"].type == "cuda" and len(gpu_id.split(",")) < nproc:
        raise InputError(f"one GPU per process: list {nproc} GPUs (e.g. --gpu_id=0,1), or set "
                         f"device: cpu", field="gpu_id", value=gpu_id)


def init_process_group(values):
    """Join this rank's process group: RecBole's multi-process branch of `Config._init_device`,
    with gloo and the CPU where there is no GPU to use (`device: cpu`, or torch sees none).
    `values` is the config's final dict; sets its device, single_spec, and (ranks > 0) quiet
    logging, as RecBole does."""
    rank, gpu_id = values["local_rank"], str(values.get("gpu_id") or "")
    on_gpu = str(values.get("device") or "") != "cpu" and gpu_id != ""
    if on_gpu:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu_id  # as RecBole does, before CUDA starts
        on_gpu = torch.cuda.is_available()
    if on_gpu:
        torch.cuda.set_device(rank)  # `check_launch` made sure gpu_id lists one per process
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if on_gpu else "gloo", rank=rank + (values.get("offset") or 0),
            world_size=values["world_size"], init_method=f"tcp://{values['ip']}:{values['port']}")
    values["device"] = torch.device("cuda", rank) if on_gpu else torch.device("cpu")
    values["single_spec"] = False
    if rank != 0:
        values.update(state="error", show_progress=False, verbose=False)


def _ddp(module, device_ids=None, **kwargs):
    """`DistributedDataParallel`, without device ids for a module on the CPU (torch refuses them)."""
    if next(module.parameters()).device.type == "cpu":
        device_ids = None
    return torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids, **kwargs)


_recbole_trainer.DistributedDataParallel = _ddp


class ShardCollector(Collector):
    """RecBole's Collector, which also records the evaluated users of a full ranking (`users`,
    internal ids, in evaluation order; empty for a sampled ranking) and, in a multi-process
    run, returns the data of all ranks' users, each once, in the order one process evaluates
    them (`shard` before each evaluation)."""

    users = None

    def __init__(self, config):
        super().__init__(config)
        self._uid_field = config["USER_ID_FIELD"]
        self._shard = None
        self._batch_users = []

    def shard(self, n, rank, world_size):
        """The next evaluation covers `n` samples; `DistributedSampler(shuffle=False)` gives this
        rank samples rank, rank + W, ..., padded to ceil(n / W) by wrapping past n."""
        self._shard = (n, rank, world_size)
        self._batch_users = []

    def eval_batch_collect(self, scores_tensor, interaction, positive_u, positive_i):
        super().eval_batch_collect(scores_tensor, interaction, positive_u, positive_i)
        # one row per user (full ranking); a sampled ranking's batch also holds its negatives
        if self._uid_field in interaction.interaction and len(interaction) == len(scores_tensor):
            self._batch_users.append(interaction[self._uid_field].cpu())

    def get_data_struct(self):
        struct = super().get_data_struct()
        users = torch.cat(self._batch_users or [torch.zeros(0, dtype=torch.long)])
        self._batch_users = []
        if self._shard is not None:
            n, rank, world_size = self._shard
            self._shard = None
            rows = -(-n // world_size)
            mine = {key: struct[key] for key in _PER_USER if key in struct}
            if len(users):
                mine["users"] = users
            for key, value in mine.items():
                if value.shape[0] != rows:
                    raise RuntimeError(f"multi-process evaluation needs one {key} row per "
                                       f"evaluated sample: rank {rank} has {value.shape[0]} "
                                       f"rows for {rows} samples")
            gathered = [None] * world_size
            dist.all_gather_object(gathered, mine)
            for key in mine:
                whole = torch.empty((n, *mine[key].shape[1:]), dtype=mine[key].dtype)
                for r, part in enumerate(gathered):
                    keep = len(range(r, n, world_size))  # the rest is the sampler's padding
                    whole[r::world_size] = part[key][:keep]
                if key == "users":
                    users = whole
                else:
                    struct.set(key, whole)
        self.users = users
        return struct


class DistributedTrainerMixin:
    """Trainer mixin for `LAUNCH_KEYS` runs: one best-checkpoint name for all ranks, written
    before any rank reads it, and evaluation of every user once (`ShardCollector`). A
    single-process run only gains `last_eval_users`, the users of the last evaluation."""

    def __init__(self, config, model):
        # RecBole's ensure_dir checks, then creates: two ranks racing there fail on the second
        os.makedirs(config["checkpoint_dir"], exist_ok=True)
        super().__init__(config, model)
        self.eval_collector = ShardCollector(config)
        if not config["single_spec"]:
            name = [self.saved_model_file]
            dist.broadcast_object_list(name, src=0)
            self.saved_model_file = name[0]

    @property
    def last_eval_users(self):
        """Internal ids of the users of the last evaluation, in one process's order."""
        return self.eval_collector.users

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        super()._save_checkpoint(epoch, verbose=verbose, **kwargs)
        if not self.config["single_spec"]:
            dist.barrier()  # rank 0 has written it: every rank may load it now

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and not self.config["single_spec"]:
            self.eval_collector.shard(eval_data.sample_size, dist.get_rank(),
                                      dist.get_world_size())
        return super().evaluate(eval_data, load_best_model=load_best_model,
                                model_file=model_file, show_progress=show_progress)

    def _map_reduce(self, result, num_sample):
        return result  # ShardCollector already gave every rank all users' data
