import os

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_llm2rec.feat import FeatError, feat_path
from recbole_llm2rec.model.layers import TextItemTable
from recbole_llm2rec.quick_start import build_config

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
