"""CSFT: leave-two-out sequences, input-masked labels, loss going down, resume, bad input."""
import json
import os

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


def test_loss_goes_down_then_resume_continues(tiny_qwen2_dir, games, tmp_path, capsys):
    run = tmp_path / "run"
    csft.main(run_args(tiny_qwen2_dir, run, games, "--max_steps", "4", "--save_steps", "2"))
    step, first = logged_losses(run)
    assert step == 4 and os.path.isfile(run / "csft" / "checkpoint-4" / "trainer_state.json")
    stats = json.load(open(run / "csft" / "data_stats.json"))
    assert stats["datasets"]["Games"]["users"] == 12 and stats["max_length"] <= 48
    capsys.readouterr()
    csft.main(run_args(tiny_qwen2_dir, run, games, "--max_steps", "8", "--save_steps", "2"))
    assert "resuming from" in capsys.readouterr().out
    step, losses = logged_losses(run)
    assert step == 8 and sorted(losses) == list(range(1, 9))
    assert all(losses[s] == first[s] for s in first)  # steps 1-4 were not re-run
    assert sum(losses[s] for s in (7, 8)) < sum(losses[s] for s in (1, 2))
    # Same command again: final is complete, nothing is trained or rewritten.
    mtime = os.path.getmtime(run / "csft" / "final" / "model.safetensors")
    csft.main(run_args(tiny_qwen2_dir, run, games, "--max_steps", "8"))
    assert os.path.getmtime(run / "csft" / "final" / "model.safetensors") == mtime


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


def test_incomplete_checkpoint_is_not_a_resume_point(tmp_path):
    from pretrain.training import latest_checkpoint

    assert latest_checkpoint(str(tmp_path / "missing")) is None
    for step, complete in ((2, True), (10, True), (12, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    (tmp_path / "checkpoint-x").mkdir()
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / "checkpoint-10")


@pytest.mark.slow
def test_kill_9_then_same_command_resumes(tiny_qwen2_dir, games, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from pretrain.training import latest_checkpoint

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    run = tmp_path / "run"
    args = run_args(tiny_qwen2_dir, run, games, "--max_steps", "400", "--save_steps", "2")
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
    csft.main([*args[:-4], "--max_steps", str(resumed + 2), "--save_steps", "2"])
    step, losses = logged_losses(run)
    assert step == resumed + 2 and sorted(losses) == list(range(1, resumed + 3))


def test_length_grouped_sampler_cuts_padding_and_keeps_every_example():
    import random

    from pretrain.training import LengthGroupedSampler

    rng = random.Random(0)
    lengths = [rng.randint(5, 300) for _ in range(200)]
    sampler = LengthGroupedSampler(lengths, micro_batch=4, mega_batch=400, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(200)) and order == list(sampler)

    def padded(order):
        return sum(4 * max(lengths[i] for i in order[k:k + 4]) for k in range(0, 200, 4))

    random_order = list(range(200))
    rng.shuffle(random_order)
    assert padded(order) < 1.1 * sum(lengths) < 0.8 * padded(random_order)
    sampler.set_epoch(1)
    assert list(sampler) != order  # a new epoch, a new order
    first_lengths = [max(lengths[i] for i in order[k:k + 4]) for k in range(0, 200, 4)]
    assert first_lengths != sorted(first_lengths, reverse=True)  # batch order is shuffled
