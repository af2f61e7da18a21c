"""CSFT: leave-two-out sequences, input-masked labels, loss going down, resume, bad input."""
import json
import os
import shutil

import pytest
import torch

from pretrain import csft
from pretrain.common import DataError
from pretrain.sequences import csft_examples, read_user_sequences
from pretrain.stage_config import ConfigError


def run_args(model, run_dir, data, *extra):
    """Arguments of a tiny CSFT run on the Games slice."""
    return ["--model", model, "--run_dir", str(run_dir), "--datasets", "Games", "--data_path",
            data, "--max_length", "48", "--batch_size", "4", "--micro_batch_size", "2",
            "--learning_rate", "3e-3", "--warmup_steps", "0", "--logging_steps", "1",
            "--report_to", "none", *extra]


def logged_losses(run_dir, stage="csft"):
    """{step: loss} from the final model's trainer state."""
    with open(os.path.join(run_dir, stage, "final", "trainer_state.json")) as fh:
        state = json.load(fh)
    return state["global_step"], {e["step"]: e["loss"] for e in state["log_history"] if "loss" in e}


def test_sequences_are_time_ordered_and_exclude_last_two(games, tmp_path):
    from pretrain.sequences import load_dataset_titles

    inter = os.path.join(games, "Games", "Games.inter")
    seqs = read_user_sequences(inter)
    # The same interactions in reverse file order give the same time-ordered sequences
    # (same-day ties keep their file order only within equal timestamps, so compare sets too).
    lines = open(inter).read().splitlines()
    rev = tmp_path / "Games"
    rev.mkdir()
    (rev / "Games.inter").write_text("\n".join([lines[0]] + lines[:0:-1]) + "\n")
    rev_seqs = read_user_sequences(str(rev / "Games.inter"))
    assert seqs.keys() == rev_seqs.keys()
    for user in seqs:
        assert sorted(seqs[user]) == sorted(rev_seqs[user])
    titles = load_dataset_titles(games, "Games")
    examples, stats = csft_examples(games, "Games", max_history=3)
    assert stats["users"] == 12 and stats["examples"] == sum(len(s) - 3 for s in seqs.values())
    # The first user's examples, from the spec: target t = 2nd .. (n-2)th item, history <= 3.
    items = [titles[i] for i in seqs[next(iter(seqs))]]
    mine = examples[:len(items) - 3]
    assert mine[0] == (items[0], items[1])
    assert mine[-1] == (", ".join(items[-6:-3]), items[-3])
    used = {t for pair in mine for t in (pair[1], *pair[0].split(", "))}
    for held_out in items[-2:]:
        if held_out not in items[:-2]:
            assert held_out not in used


def test_labels_mask_exactly_the_input(tiny_tokenizer):
    pairs = [("Super Mario Odyssey, Xbox One Wireless Controller", "PlayStation 4 Slim")]
    feat = csft.build_features(tiny_tokenizer, pairs, max_length=1024)[0]
    n_in = len(tiny_tokenizer(pairs[0][0])["input_ids"])
    assert feat["labels"][:n_in] == [-100] * n_in
    assert feat["labels"][n_in:] == feat["input_ids"][n_in:]
    assert tiny_tokenizer.decode(feat["input_ids"][:n_in]) == pairs[0][0]
    assert tiny_tokenizer.decode(feat["labels"][n_in:]) == "PlayStation 4 Slim\n<|endoftext|>"
    # Truncation drops the oldest input tokens and keeps the whole output.
    short = csft.build_features(tiny_tokenizer, pairs, max_length=n_in)[0]
    assert len(short["input_ids"]) == n_in
    assert short["input_ids"] == feat["input_ids"][-n_in:]
    n_out = len(feat["input_ids"]) - n_in
    assert short["labels"][-n_out:] == feat["labels"][-n_out:]
    assert short["labels"][:-n_out] == [-100] * (n_in - n_out)


def test_loss_goes_down_and_a_resumed_run_equals_an_uninterrupted_one(
        tiny_qwen2_dir, games, tmp_path, capsys, monkeypatch):
    from safetensors.torch import load_file

    from pretrain import steps

    run = tmp_path / "run"
    args = run_args(tiny_qwen2_dir, run, games, "--max_steps", "8", "--save_steps", "2")
    final = csft.main(args)
    step, losses = logged_losses(run)
    assert step == 8 and sorted(losses) == list(range(1, 9))
    assert sum(losses[s] for s in (7, 8)) < sum(losses[s] for s in (1, 2))
    stats = json.load(open(run / "csft" / "data_stats.json"))
    assert stats["datasets"]["Games"]["users"] == 12 and stats["max_length"] <= 48
    whole = load_file(os.path.join(final, "model.safetensors"))
    # Killed while writing checkpoint-8's state, before final/: resume from checkpoint-6.
    shutil.rmtree(final)
    state = run / "csft" / "checkpoint-8" / "trainer_state.json"
    state.write_text(state.read_text()[:100])
    micro_steps = []
    real_step = steps.token_step
    monkeypatch.setattr(steps, "token_step", lambda trainer, model, batches: micro_steps.extend(
        batches) or real_step(trainer, model, batches))
    capsys.readouterr()
    csft.main(args)
    out = capsys.readouterr().out
    assert f"skipping {run / 'csft' / 'checkpoint-8'}: trainer_state.json is unreadable" in out
    assert f"resuming from {run / 'csft' / 'checkpoint-6'}" in out
    assert len(micro_steps) == 2 * 2  # steps 7 and 8 only, 2 micro-batches each
    # The optimizer state came from the checkpoint: AdamW has counted all 8 steps.
    optimizer = torch.load(run / "csft" / "checkpoint-8" / "optimizer.pt", weights_only=True)
    assert {int(p["step"]) for p in optimizer["state"].values()} == {8}
    resumed = load_file(os.path.join(final, "model.safetensors"))
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    step, again = logged_losses(run)
    assert step == 8 and again == losses
    # Same settings again (save and logging settings do not count): nothing is redone.
    mtime = os.path.getmtime(run / "csft" / "final" / "model.safetensors")
    csft.main([*args, "--logging_steps", "3", "--save_steps", "4"])
    assert "up to date; nothing to do" in capsys.readouterr().out
    assert os.path.getmtime(run / "csft" / "final" / "model.safetensors") == mtime


def test_an_interrupted_run_with_other_settings_starts_over(tiny_qwen2_dir, games, tmp_path,
                                                            capsys):
    import glob

    run = tmp_path / "run"
    args = run_args(tiny_qwen2_dir, run, games, "--max_steps", "2", "--save_steps", "1")
    csft.main(args)
    shutil.rmtree(run / "csft" / "final")  # interrupted after its last checkpoint
    capsys.readouterr()
    csft.main([*args, "--learning_rate", "1e-3"])
    out = capsys.readouterr().out
    assert "[csft] redoing: learning_rate 0.003 -> 0.001;" in out and "resuming" not in out
    old, = glob.glob(str(run / "csft.old-*"))
    assert sorted(os.listdir(old))[:2] == ["checkpoint-1", "checkpoint-2"]
    assert logged_losses(run)[0] == 2


def test_lora_run_saves_a_merged_model(tiny_llama_dir, games, tmp_path):
    from transformers import AutoModelForCausalLM

    final = csft.main(run_args(tiny_llama_dir, tmp_path, games, "--max_steps", "2",
                               "--lora_r", "4"))
    assert not os.path.exists(os.path.join(final, "adapter_config.json"))
    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    tuned = AutoModelForCausalLM.from_pretrained(final)
    q_base = base.model.layers[0].self_attn.q_proj.weight
    q_tuned = tuned.model.layers[0].self_attn.q_proj.weight
    assert q_base.shape == q_tuned.shape and not torch.allclose(q_base, q_tuned)


def test_bad_inputs_fail_before_training(tiny_qwen2_dir, games, tmp_path):
    no_title = tmp_path / "data" / "NoTitle"
    no_title.mkdir(parents=True)
    (no_title / "NoTitle.inter").write_text(open(os.path.join(games, "Games", "Games.inter")).read())
    (no_title / "NoTitle.item").write_text("item_id:token\tprice:float\ni1\t3.5\n")
    args = run_args(tiny_qwen2_dir, tmp_path / "run", str(tmp_path / "data"))
    with pytest.raises(DataError, match="NoTitle.item: no 'title' column"):
        csft.main([*args, "--datasets", "NoTitle"])
    (no_title / "NoTitle.item").write_text("item_id:token\ttitle:token_seq\ni1\t  \n")
    with pytest.raises(DataError, match="item 'i1' has an empty 'title'"):
        csft.main([*args, "--datasets", "NoTitle"])
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        os.link(os.path.join(tiny_qwen2_dir, name), bare / name)
    with pytest.raises(ConfigError, match="has no tokenizer"):
        csft.main(run_args(str(bare), tmp_path / "run", games))
    with pytest.raises(ConfigError, match="not a multiple"):
        csft.main([*run_args(tiny_qwen2_dir, tmp_path / "run", games), "--batch_size", "5"])
    assert not (tmp_path / "run" / "csft").exists()


def fake_checkpoint(folder, step):
    """A checkpoint folder with the files the Trainer writes (contents are placeholders)."""
    folder.mkdir()
    for name in ("model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth"):
        (folder / name).write_bytes(b"x" * 64)
    (folder / "trainer_state.json").write_text(json.dumps(
        {"global_step": step, "log_history": [{"step": s, "loss": 1.0} for s in range(step)]},
        indent=2))


@pytest.mark.parametrize("damage", ["truncated state", "no state", "no optimizer",
                                    "no weights"])
def test_resume_skips_an_incomplete_newest_checkpoint(tmp_path, capsys, damage):
    from pretrain.checkpoints import latest_checkpoint

    assert latest_checkpoint(str(tmp_path / "missing")) is None
    for step in (2, 10, 12):
        fake_checkpoint(tmp_path / f"checkpoint-{step}", step)
    (tmp_path / "checkpoint-x").mkdir()
    newest = tmp_path / "checkpoint-12"
    if damage == "truncated state":  # killed while writing it
        text = (newest / "trainer_state.json").read_text()
        (newest / "trainer_state.json").write_text(text[:len(text) // 2])
    else:
        name = {"no state": "trainer_state.json", "no optimizer": "optimizer.pt",
                "no weights": "model.safetensors"}[damage]
        os.remove(newest / name)
    capsys.readouterr()
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-10")
    lines = capsys.readouterr().out.splitlines()
    why = {"truncated state": "trainer_state.json is unreadable (JSONDecodeError",
           "no state": "no trainer_state.json", "no optimizer": "no optimizer.pt",
           "no weights": "no model weights"}[damage]
    assert len(lines) == 1 and lines[0].startswith(f"skipping {newest}: {why}"), lines


@pytest.mark.slow
def test_kill_9_then_same_command_resumes(tiny_qwen2_dir, games, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from pretrain.checkpoints import latest_checkpoint

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = tmp_path / "run"
    args = run_args(tiny_qwen2_dir, run, games, "--max_steps", "60", "--save_steps", "2")
    proc = subprocess.Popen([sys.executable, "-m", "pretrain.csft", *args], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while latest_checkpoint(str(run / "csft")) in (None, str(run / "csft" / "checkpoint-2")):
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    resumed = int(latest_checkpoint(str(run / "csft")).rsplit("-", 1)[1])
    assert resumed >= 4 and not (run / "csft" / "final").exists()
    csft.main(args)  # the same command: the same settings, so it resumes
    step, losses = logged_losses(run)
    assert step == 60 and sorted(losses) == list(range(1, 61))


def test_length_grouped_sampler_cuts_padding_and_keeps_every_example():
    import random

    from pretrain.batching import StepSampler

    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(200)]
    sampler = StepSampler(lengths, batch_size=4, group_by_length=True, mega_steps=100, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(200)) and order == list(sampler)

    def padded(order):
        return sum(4 * max(lengths[i] for i in order[k:k + 4]) for k in range(0, 200, 4))

    random_order = list(range(200))
    rng.shuffle(random_order)
    assert padded(order) < 1.1 * sum(lengths) < 0.8 * padded(random_order)
    sampler.set_epoch(1)
    again = list(sampler)
    assert again != [k + 200 for k in order]  # a new epoch, a new order (draws epoch x 200 + i)
    assert sorted(again) == list(range(200, 400))
    first_lengths = [max(lengths[i] for i in order[k:k + 4]) for k in range(0, 200, 4)]
    assert first_lengths != sorted(first_lengths, reverse=True)  # batch order is shuffled


def test_length_grouped_steps_hold_the_same_examples_in_any_number_of_processes():
    import random

    from pretrain.batching import StepSampler

    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(400)]
    one = list(StepSampler(lengths, 16, True, mega_steps=25, seed=2))
    two = list(StepSampler(lengths, 16, True, mega_steps=25, seed=2, processes=2))
    steps = range(0, 400, 16)
    assert [sorted(one[k:k + 16]) for k in steps] == [sorted(two[k:k + 16]) for k in steps]
    # Each process's half of a step is sorted, and the halves pad to about the same length:
    # rank 0 does not get all the longest examples of the step (and the others wait for it).
    def padded_ratio(order, k):
        first, second = order[k:k + 8], order[k + 8:k + 16]
        return max(lengths[i] for i in first) / max(lengths[i] for i in second)

    for k in steps:
        halves = [[lengths[i] for i in two[k + h:k + h + 8]] for h in (0, 8)]
        assert all(half == sorted(half, reverse=True) for half in halves)
    dealt = [padded_ratio(two, k) for k in steps]
    undealt = [padded_ratio(one, k) for k in steps]
    assert max(dealt) < 1.1 and sum(undealt) > sum(dealt) + 0.05 * len(dealt)
