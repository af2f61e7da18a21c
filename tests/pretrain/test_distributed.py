"""Pre-training and extraction under torchrun: real launches of two processes (gloo on CPU; the
same code picks nccl on GPUs) with the tiny random Qwen2 and Llama.

One two-process launch per architecture trains every stage (csft, mntp, ic, scft) twice (B
examples per process; B/2 with two accumulation steps); the references run in this process with
2B examples at once and with accumulation. A second launch runs a pipeline (csft, ic, extract)
whose rank 1 is killed in CSFT, then the same command again: resume, one writer, extraction.
"""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pretrain import csft, ic, mntp, ranks, scft

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAUNCH = os.path.join(ROOT, "tests", "pretrain", "launch.py")
STAGES = {"csft": csft, "mntp": mntp, "ic": ic, "scft": scft}
BATCH = 8  # the effective batch: 2 processes x 4, or 1 process x 8
# dropout off; SCFT's prompts start with a long instruction (~40 tiny-tokenizer tokens)
STAGE_ARGV = {"ic": ["--attention_dropout", "0"],
              "scft": ["--lora_dropout", "0", "--max_length", "128"]}
TOLERANCE = 1e-5


def stage_argv(stage, model, run_dir, data, micro, **extra):
    """Arguments of a 5-step run of `stage` with effective batch BATCH, dropout off."""
    argv = ["--model", model, "--run_dir", str(run_dir), "--datasets", "Games", "--data_path",
            data, "--max_length", "32", "--batch_size", str(BATCH), "--micro_batch_size",
            str(micro), "--max_steps", "5", "--learning_rate", "1e-3", "--warmup_steps", "0",
            "--report_to", "none", "--logging_steps", "1", "--seed", "3"]
    for key, value in extra.items():
        argv += [f"--{key}", str(value)]
    return argv + STAGE_ARGV.get(stage, [])


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(tmp, jobs, watch, kill=None, check=True):
    """Launch `jobs` ([module, argv]) in two processes (tests/pretrain/launch.py). Returns
    (completed process, {rank: report})."""
    spec = os.path.join(tmp, f"spec{len(os.listdir(tmp))}.json")
    report = spec[:-5] + ".report"
    with open(spec, "w", encoding="utf-8") as fh:
        json.dump({"jobs": jobs, "report": report, "watch": str(watch), "kill": kill}, fh)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT, TOKENIZERS_PARALLELISM="false")
    env.pop("RANK", None), env.pop("WORLD_SIZE", None)
    # Its own process group, so a hang is ended with every worker it started (not orphaned).
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", LAUNCH, spec], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"the launch hung (killed after 180 s): {err[-3000:]}")
    proc = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    reports = {}
    for rank in (0, 1):
        if os.path.isfile(f"{report}.{rank}.json"):
            with open(f"{report}.{rank}.json", encoding="utf-8") as fh:
                reports[rank] = json.load(fh)
    return proc, reports


def weights(run_dir, stage):
    return load_file(os.path.join(run_dir, stage, "final", "model.safetensors"))


def max_difference(a, b):
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a)


@pytest.fixture(scope="module", params=["qwen2", "llama"])
def runs(request, make_tiny_model, games, tmp_path_factory):
    """Every stage of one architecture, trained: in two processes (B per process: `two`; B/2
    with 2 accumulation steps: `two_ga`) and in this process (2B at once: `one`; B/2 with 4
    accumulation steps: `one_ga`). Returns (model folder, {variant: run folder})."""
    model = make_tiny_model(request.param)
    tmp = tmp_path_factory.mktemp(f"dist-{request.param}")
    folders = {v: tmp / v for v in ("two", "two_ga", "one", "one_ga")}
    jobs = [[f"pretrain.{stage}", stage_argv(stage, model, folders[v], games, micro)]
            for stage in STAGES for v, micro in (("two", BATCH // 2), ("two_ga", BATCH // 4))]
    torchrun(str(tmp), jobs, tmp)
    for stage, module in STAGES.items():
        for v, micro in (("one", BATCH), ("one_ga", BATCH // 4)):
            module.main(stage_argv(stage, model, folders[v], games, micro))
    return model, folders


@pytest.mark.parametrize("stage", list(STAGES))
def test_two_processes_and_accumulation_train_the_same_model_as_one_process(runs, stage):
    model, folders = runs
    one = weights(folders["one"], stage)
    start = load_file(os.path.join(model, "model.safetensors"))
    # ic and scft save the bare encoder: the start's names have a "model." prefix there
    start = {k.removeprefix("model.") if k not in one else k: v for k, v in start.items()}
    assert max_difference(one, {k: start[k] for k in one}) > 100 * TOLERANCE  # it trained
    for variant in ("two", "two_ga", "one_ga"):
        assert max_difference(weights(folders[variant], stage), one) <= TOLERANCE, variant
    # Same examples in every step: the loss each run logged is the same.
    losses = {}
    for variant, folder in folders.items():
        state = json.load(open(os.path.join(folder, stage, "final", "trainer_state.json")))
        losses[variant] = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses["one"]) == 5
    for variant in ("two", "two_ga", "one_ga"):
        assert np.allclose(losses[variant], losses["one"], atol=2e-4), (variant, losses)


def _gather_check(rank, world, port, a, b, out):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    rows = slice(rank * len(a) // world, (rank + 1) * len(a) // world)
    result = {}
    for name in ("ic", "scft"):
        mine_a = a[rows].clone().requires_grad_()
        mine_b = b[rows].clone().requires_grad_()
        if name == "ic":
            others, offset = ic.gather_views(mine_b)
            loss = ic.contrastive_loss(mine_a, others, 0.3, offset)
        else:
            loss = scft.symmetric_contrastive_loss(mine_a, mine_b, 0.3)
        loss.backward()
        # What a process contributes to the gradient that DDP averages over processes.
        result[name] = (loss.item(), mine_a.grad / world, mine_b.grad / world)
    torch.save(result, os.path.join(out, f"{rank}.pt"))
    torch.distributed.destroy_process_group()


def test_gathered_negatives_give_the_loss_and_gradients_of_one_process(tmp_path):
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 5, generator=gen), torch.randn(6, 5, generator=gen)
    torch.multiprocessing.spawn(_gather_check, args=(2, free_port(), a, b, str(tmp_path)), nprocs=2)
    parts = [torch.load(tmp_path / f"{r}.pt") for r in (0, 1)]
    for name in ("ic", "scft"):
        whole_a, whole_b = a.clone().requires_grad_(), b.clone().requires_grad_()
        if name == "ic":
            loss = ic.contrastive_loss(whole_a, whole_b, 0.3)
        else:
            loss = scft.symmetric_contrastive_loss(whole_a, whole_b, 0.3)
        loss.backward()
        mean_loss = sum(p[name][0] for p in parts) / 2
        assert mean_loss == pytest.approx(loss.item(), abs=1e-6)
        assert torch.allclose(torch.cat([p[name][1] for p in parts]), whole_a.grad, atol=1e-7)
        assert torch.allclose(torch.cat([p[name][2] for p in parts]), whole_b.grad, atol=1e-7)
        # With the other ranks' rows detached (the old gather), rank 0's rows of b would get
        # only its own loss's gradient, which is not the same.
        alone_b = b.clone().requires_grad_()
        if name == "ic":
            ic.contrastive_loss(a[:3], alone_b, 0.3).backward()
            assert not torch.allclose(alone_b.grad[:3] / 2, whole_b.grad[:3], atol=1e-4)


def test_killed_pipeline_resumes_on_both_ranks_one_writer_and_shared_extraction(
        tiny_qwen2_dir, games, tmp_path):
    import re
    import shutil

    import yaml

    from pretrain.common import read_item_titles
    from pretrain.extract import embed_texts, load_encoder
    from recbole_llm2rec.feat import read_feat, read_sidecar

    data, run = tmp_path / "data", tmp_path / "run"
    shutil.copytree(games, data)
    train = {"max_length": 32, "batch_size": BATCH, "micro_batch_size": BATCH // 2,
             "learning_rate": 1e-3, "warmup_steps": 0}
    config = {"backbone": tiny_qwen2_dir, "run_dir": str(run), "data_path": str(data),
              "datasets": ["Games"], "stages": ["csft", "ic"], "seed": 3,
              "report_to": ["tensorboard"], "logging_steps": 1,
              "csft": dict(train, max_steps=5, save_steps=2),
              "ic": dict(train, max_steps=2, save_steps=1, attention_dropout=0.0),
              "extract": {"name": "llm2rec", "datasets": ["Games"], "batch_tokens": 64}}
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config))
    jobs = [["pretrain.pipeline", ["--config", str(tmp_path / "pipeline.yaml")]]]
    launches = tmp_path / "launches"
    launches.mkdir()
    # Rank 1 is killed (SIGKILL) at the start of CSFT's 4th step: checkpoint-2 is complete.
    proc, _ = torchrun(str(launches), jobs, tmp_path, kill={"rank": 1, "step": 3}, check=False)
    assert proc.returncode != 0
    assert (run / "csft" / "checkpoint-2").is_dir() and not (run / "csft" / "final").exists()
    # The same command again: both ranks resume from checkpoint-2, then IC and extraction run.
    _, reports = torchrun(str(launches), jobs, tmp_path)
    for rank in (0, 1):
        stages = {s["stage"]: s for s in reports[rank]["stages"]}
        assert stages["csft"]["resumed"] == "checkpoint-2" and stages["ic"]["resumed"] is None
        assert {s: stages[s]["weights"] for s in stages} == \
            {s["stage"]: s["weights"] for s in reports[0]["stages"]}  # the ranks agree
    one = tmp_path / "one"
    csft.main(["--model", tiny_qwen2_dir, "--run_dir", str(one), "--datasets", "Games",
               "--data_path", str(data), "--seed", "3", "--report_to", "none", "--max_steps",
               "5", *[f"--{k}={v}" for k, v in dict(train, micro_batch_size=BATCH).items()]])
    assert max_difference(weights(run, "csft"), weights(one, "csft")) <= TOLERANCE

    # One writer: rank 1 only makes checkpoint folders (exist_ok) and its own RNG state.
    ours = {rank: [(kind, path) for kind, path in reports[rank]["writes"]
                   if not path.startswith("launches/")] for rank in (0, 1)}  # the test's own
    rank1 = {path for _, path in ours[1]}
    assert rank1 and all(re.fullmatch(r"run/(csft|ic)/checkpoint-\d+(/rng_state_1\.pth)?", p)
                         for p in rank1), sorted(rank1)
    written = [path for kind, path in ours[0] if kind in ("open", "save", "rename")]
    twice = {p for p in written if written.count(p) > 1 and "tfevents" not in p}  # appended
    assert not twice, sorted(twice)
    files = [os.path.join(d, f) for d, _, names in os.walk(tmp_path) for f in names]
    assert not [f for f in files if ".tmp" in os.path.basename(f)]
    assert all(os.path.getsize(f) > 0 for f in files if "tfevents" not in f)
    for stage in ("csft", "ic"):  # one tensorboard file per stage (per launch): rank 0's
        events = [f for f in files if f"/run/{stage}/logs" in f and "tfevents" in f]
        assert len(events) == (2 if stage == "csft" else 1), events

    # Extraction: each rank embedded half the titles; rank 0 wrote the one .feat, whose rows
    # equal a single-process extraction of IC's final model, in the .item file's order.
    feat = data / "Games" / "Games.llm2rec.feat"
    tokens, rows = read_feat(str(feat))
    item_tokens, titles = read_item_titles(str(data / "Games" / "Games.item"))
    assert tokens == item_tokens and read_sidecar(str(feat))["processes"] == 2
    net, tokenizer, _ = load_encoder(str(run / "ic" / "final"), device="cpu")
    alone, _ = embed_texts(net, tokenizer, titles, batch_tokens=64)
    assert np.abs(rows - alone).max() <= 1e-6
