import os

import numpy as np
import pytest

from tiny_llm import CORPUS, save_tiny_model

BENCHMARKS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "benchmarks")


@pytest.fixture
def versus(monkeypatch):
    monkeypatch.syspath_prepend(BENCHMARKS)  # the script imports its sibling `machine`
    import extract_speed

    return extract_speed


@pytest.fixture
def tiny(tmp_path):
    from pretrain.extract import load_encoder

    model, tokenizer, _ = load_encoder(save_tiny_model(tmp_path / "llama", "llama"),
                                       device="cpu")
    return model, tokenizer


def test_flops_by_hand(versus, tiny):
    model, _ = tiny
    # tiny Llama: hidden 32, 4 heads of 8, 2 KV heads (k, v: 16 wide), MLP 64, 2 layers, no head
    linear = 2 * (32 * 32 + 32 * 16 + 32 * 16 + 32 * 32 + 3 * 32 * 64)
    assert linear == 18432
    assert versus.forward_flops(model, [3]) == 2 * linear * 3 + 4 * 2 * 32 * 9
    # longest first in batches of 2: [5, 3] padded to 5, [2, 1] padded to 2
    assert versus.sorted_padded_flops(model, [1, 5, 3, 2], 2) == versus.forward_flops(
        model, [5, 5, 2, 2])


def test_plain_loop_embeds_like_extract_and_counts_its_padding(versus, tiny):
    from pretrain.extract import embed_texts

    model, tokenizer = tiny
    rows, flops = versus.plain_loop(model, tokenizer, CORPUS, batch_size=4)
    reference, _ = embed_texts(model, tokenizer, CORPUS, "mean", 4)
    np.testing.assert_allclose(rows, reference, rtol=1e-4, atol=1e-5)
    lengths = [len(ids) for ids in tokenizer(CORPUS)["input_ids"]]
    padded = [max(lengths[s:s + 4]) for s in range(0, len(lengths), 4) for _ in lengths[s:s + 4]]
    assert flops == versus.forward_flops(model, padded) > versus.forward_flops(model, lengths)
