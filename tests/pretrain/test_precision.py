"""Stages with `bf16: true` on the CPU: one step trains like fp32 within bf16's precision, and
the saved `final/` loads in fp32 and in bf16 for extraction (tiny random Qwen2, Games slice)."""
import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pretrain import csft, ic, mntp, scft
from pretrain.common import read_item_titles
from pretrain.extract import embed_texts, load_encoder
from test_scft import with_attributes

LR = 1e-2
STAGES = {"csft": csft, "mntp": mntp, "ic": ic, "scft": scft}
BF16_EPS = 2 ** -8  # relative spacing of bf16 numbers (8 bits of mantissa)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 12-user Games slice with item attributes (scft reads them; the others, titles)."""
    from slices import write_slice

    return with_attributes(write_slice(tmp_path_factory.mktemp("attrs"), "Games", 12))


def one_step(stage, model, run_dir, data, bf16):
    """One optimizer step of `stage` at learning rate LR. Returns (final folder, logged loss).
    Seeded first: LoRA's initial weights (scft) come from torch's global generator, before the
    Trainer seeds it."""
    torch.manual_seed(0)
    final = STAGES[stage].main([
        "--model", model, "--run_dir", str(run_dir), "--datasets", "Games", "--data_path",
        data, "--max_length", "32", "--batch_size", "4", "--micro_batch_size", "4",
        "--learning_rate", str(LR), "--warmup_steps", "0", "--logging_steps", "1",
        "--report_to", "none", "--max_steps", "1", "--bf16", bf16,
        # dropout draws other masks for bf16 tensors than for fp32 ones
        *(["--lora_r", "null"] if stage == "scft" else [])])
    with open(os.path.join(final, "trainer_state.json")) as fh:
        (loss,) = [e["loss"] for e in json.load(fh)["log_history"] if "loss" in e]
    return final, loss


def weights(final):
    return load_file(os.path.join(final, "model.safetensors"))


@pytest.mark.parametrize("stage", STAGES)
def test_one_bf16_step_matches_fp32_and_final_loads_in_both(stage, tiny_qwen2_dir, data,
                                                             tmp_path):
    finals, losses = {}, {}
    for bf16 in ("false", "true"):
        finals[bf16], losses[bf16] = one_step(stage, tiny_qwen2_dir, tmp_path / bf16, data, bf16)
    assert losses["true"] == pytest.approx(losses["false"], rel=0.02)
    w16, w32 = weights(finals["true"]), weights(finals["false"])
    assert w16.keys() == w32.keys()
    assert {t.dtype for t in w16.values()} == {torch.bfloat16}  # it really trained in bf16
    if stage == "scft":
        # not its weights: on this random backbone its first gradients are about Adam's eps
        # (1e-8; the fp32 step moves weights by a fraction of LR), so bf16 rounding decides
        # their direction; the loss above is compared, and LoRA is merged into bf16 weights
        return check_final_loads(finals["true"], data)
    # the same step within bf16's rounding: Adam moves nearly every weight by LR in the sign of
    # its gradient; a few weights whose gradient is about zero (k_proj's bias: softmax ignores
    # it) may go either way
    start = weights(tiny_qwen2_dir)
    steps32, steps16, off = [], [], 0
    for name, value in w32.items():
        first = next(v for k, v in start.items() if name.endswith(k) or k.endswith(name))
        steps32.append((value - first).flatten())
        steps16.append((w16[name].float() - first).flatten())
        off += ((steps16[-1] - steps32[-1]).abs() > 2 * BF16_EPS * value.abs().flatten() + LR / 2).sum()
    steps32, steps16 = torch.cat(steps32), torch.cat(steps16)
    assert steps32.abs().max() > LR / 2  # the step changed the weights
    assert torch.nn.functional.cosine_similarity(steps16, steps32, dim=0) > 0.98
    assert off / len(steps32) < 0.01
    check_final_loads(finals["true"], data)


def check_final_loads(final, data):
    """`final` (saved in bf16) loads for extraction in fp32 and in bf16: the same embeddings."""
    titles = read_item_titles(os.path.join(data, "Games", "Games.item"))[1][:16]
    rows = {}
    for dtype in ("float32", "bfloat16"):
        net, tokenizer, info = load_encoder(final, dtype=dtype, device="cpu")
        assert next(net.parameters()).dtype == getattr(torch, dtype) and info["dtype"] == dtype
        rows[dtype], _ = embed_texts(net, tokenizer, titles)
    cos = (rows["float32"] * rows["bfloat16"]).sum(1) / (
        np.linalg.norm(rows["float32"], axis=1) * np.linalg.norm(rows["bfloat16"], axis=1))
    assert cos.min() > 0.99, cos
