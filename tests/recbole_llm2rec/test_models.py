import os
import re
import zlib

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation

from pretrain.common import read_item_titles
from chance import random_recall
from recbole_llm2rec.compat import get_trainer
from recbole_llm2rec.feat import FeatError, feat_path, write_feat
from recbole_llm2rec.model.layers import TextItemTable
from recbole_llm2rec.quick_start import build_config
from slices import write_slice

SMALL = {"hidden_size": 32, "inner_size": 64, "embedding_size": 32, "n_layers": 1,
         "train_batch_size": 256, "text_emb": "rand", "show_progress": False}


def build(model, root, **overrides):
    config, cls = build_config(model, "Games", config_dict={**SMALL, "data_path": root, **overrides})
    train, _, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return cls(config, train._dataset), train


@pytest.mark.parametrize("model", ["TextSASRec", "TextGRU4Rec"])
def test_forward_backward_trains_adapter_not_table(model, games_root):
    net, train = build(model, games_root)
    table = net.item_embedding
    assert isinstance(table, TextItemTable)
    assert table.text_emb.shape == (train._dataset.item_num, 24)
    assert not any(p is table.text_emb for p in net.parameters())  # frozen: a buffer
    assert "item_embedding.text_emb" in net.state_dict()
    frozen = table.text_emb.clone()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    batch = next(iter(train))
    losses = []
    for _ in range(5):
        loss = net.calculate_loss(batch)
        opt.zero_grad()
        loss.backward()
        assert table.adapter.linear.weight.grad.abs().sum() > 0
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert torch.equal(table.text_emb, frozen)
    scores = net.full_sort_predict(batch)
    assert scores.shape == (len(batch), train._dataset.item_num)


def test_input_and_output_tables_are_the_same_adapted_rows(games_root):
    net, train = build("TextSASRec", games_root)
    table = net.item_embedding
    ids = torch.tensor([[1, 2, 3], [4, 0, 5]])
    expected = table.adapter(table.text_emb)  # computed directly, no cache
    assert torch.allclose(table(ids), expected[ids])
    assert torch.allclose(table.weight, expected)
    # after an update the cached table is recomputed, not stale
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    loss = net.calculate_loss(next(iter(train)))
    loss.backward()
    opt.step()
    assert torch.allclose(table.weight, table.adapter(table.text_emb))
    assert not torch.allclose(table.weight, expected)


def test_rows_follow_item_tokens(games_root):
    net, train = build("TextGRU4Rec", games_root)
    folder = os.path.join(games_root, "Games")
    from recbole_llm2rec.feat import read_feat
    tokens, emb = read_feat(feat_path(folder, "Games", "rand"))
    id_tokens = train._dataset.field2id_token["item_id"]
    for internal_id in (1, 7, len(id_tokens) - 1):
        row = tokens.index(id_tokens[internal_id])
        assert np.array_equal(net.item_embedding.text_emb[internal_id].numpy(), emb[row])
    assert not net.item_embedding.text_emb[0].any()


def test_mlp_adapter_and_bad_settings(games_root):
    net, _ = build("TextSASRec", games_root, adapter_type="mlp", adapter_hidden_size=48)
    assert net.item_embedding.weight.shape[1] == 32
    with pytest.raises(ValueError, match="adapter_type 'moex'"):
        build("TextSASRec", games_root, adapter_type="moex")
    with pytest.raises(FeatError, match="dimension 24, config expects 896"):
        build("TextSASRec", games_root, text_emb_dim=896)
    with pytest.raises(FeatError, match="Games.absent.feat: embedding file not found"):
        build("TextSASRec", games_root, text_emb="absent")


def title_words_table(item_path, dim=256):
    """A cheap real text embedding: each title's words hashed (crc32) into `dim` signed buckets,
    L2-normalised. Returns (item tokens, [n_items, dim])."""
    tokens, rows = [], []
    with open(item_path, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            token, title = line.rstrip("\n").split("\t")[:2]
            row = np.zeros(dim)
            for word in re.findall(r"[a-z0-9]+", title.lower()):
                h = zlib.crc32(word.encode())
                row[h % dim] += 1.0 if (h >> 16) & 1 else -1.0
            tokens.append(token)
            rows.append(row / max(np.linalg.norm(row), 1e-9))
    return tokens, np.array(rows)


@pytest.fixture(scope="module")
def games_words(tmp_path_factory):
    """The whole 500-user Games slice with `Games.words.feat`: hashed title words."""
    root = write_slice(str(tmp_path_factory.mktemp("data")), "Games", 500)
    folder = os.path.join(root, "Games")
    write_feat(feat_path(folder, "Games", "words"), *title_words_table(
        os.path.join(folder, "Games.item")))
    return root


@pytest.fixture
def one_thread():
    """Small models train faster on one thread (more only contend); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("model, settings", [
    ("TextGRU4Rec", {"adapter_type": "linear"}),
    ("TextSASRec", {"adapter_type": "mlp", "adapter_hidden_size": 48}),
])
def test_trains_end_to_end_and_beats_a_random_ranking(model, settings, games_words, tmp_path,
                                                       one_thread):
    config, cls = build_config(model, "Games", config_dict={
        **SMALL, "num_layers": 1, "text_emb": "words", "learning_rate": 0.005, "epochs": 5,
        "stopping_step": 100, "data_path": games_words, "checkpoint_dir": str(tmp_path),
        **settings})
    dataset = create_dataset(config)
    train, valid, test = data_preparation(config, dataset)
    net = cls(config, train._dataset)
    table = net.item_embedding
    frozen = table.text_emb.clone()
    adapter = {k: v.clone() for k, v in table.adapter.state_dict().items()}
    trainer = get_trainer(config["MODEL_TYPE"], model)(config, net)
    trainer.fit(train, valid, saved=False, show_progress=False)
    losses = [trainer.train_loss_dict[e] for e in range(5)]
    assert losses[-1] < 0.96 * losses[0], losses
    result = trainer.evaluate(test, load_best_model=False)
    chance = random_recall(dataset, 20)
    assert 0.005 < chance < 0.02
    assert result["recall@20"] > 3 * chance, (dict(result), chance)
    assert torch.equal(table.text_emb, frozen)  # the text table is never trained
    changed = [k for k, v in table.adapter.state_dict().items() if not torch.equal(v, adapter[k])]
    assert changed == list(adapter)  # every adapter tensor was trained
