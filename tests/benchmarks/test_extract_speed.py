import numpy as np
import pytest

from tiny_llm import CORPUS, save_tiny_model


@pytest.fixture
def versus():
    from benchmarks import extract_speed

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
    # longest first within 10 padded tokens: [5, 3] padded to 5, then [2, 1] padded to 2
    assert versus.token_batch_flops(model, [1, 5, 3, 2], 10) == versus.forward_flops(
        model, [5, 5, 2, 2])


def test_plain_loop_embeds_like_extract_and_counts_its_padding(versus, tiny):
    from pretrain.extract import embed_texts

    model, tokenizer = tiny
    rows, flops = versus.plain_loop(model, tokenizer, CORPUS, batch_size=4)
    reference, _ = embed_texts(model, tokenizer, CORPUS, "mean", 16)
    np.testing.assert_allclose(rows, reference, rtol=1e-4, atol=1e-5)
    lengths = [len(ids) for ids in tokenizer(CORPUS)["input_ids"]]
    padded = [max(lengths[s:s + 4]) for s in range(0, len(lengths), 4) for _ in lengths[s:s + 4]]
    assert flops == versus.forward_flops(model, padded) > versus.forward_flops(model, lengths)


def test_versus_plain_writes_its_block_with_the_verdict(versus, tmp_path, monkeypatch):
    from slices import write_slice

    data = write_slice(str(tmp_path / "data"), "Games", 3)
    model = save_tiny_model(tmp_path / "llama", "llama")
    results = tmp_path / "extract.md"
    monkeypatch.setattr(versus, "RESULTS", str(results))
    monkeypatch.setattr(versus, "matmul_flops", lambda: 1e9)  # not the 3 s measurement
    versus.versus_plain(["--versus_plain", "--model", model, "--data_path", data,
                         "--dataset", "Games", "--items", "12", "--batch_tokens", "64", "16"])
    text = results.read_text()
    assert "## Versus a plain loop" in text and "12 titles (12 distinct)" in text
    rows = [line for line in text.splitlines() if line.startswith("| pretrain.extract")]
    assert [row.split(" | ")[1] for row in rows] == ["64 tokens", "16 tokens"]
    assert "| plain loop, file order | 16 titles |" in text and "Target (>= 2x" in text
    assert all(float(row.split(" | ")[9]) > 0.9999 for row in rows)  # min cosine vs plain
