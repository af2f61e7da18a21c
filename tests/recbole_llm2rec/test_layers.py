"""The item tables of the Text* models (model/layers.py): when the adapted table is computed."""
import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_llm2rec.quick_start import build_config

SMALL = {"hidden_size": 32, "inner_size": 64, "embedding_size": 32, "n_layers": 1,
         "train_batch_size": 256, "text_emb": "rand", "show_progress": False}


def build(model, root, **overrides):
    """(model in train mode, config, train, valid, test data) on the Games slice."""
    config, cls = build_config(model, "Games", config_dict={**SMALL, "data_path": root, **overrides})
    train, valid, test = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return cls(config, train._dataset), config, train, valid, test


def count_table_builds(table):
    """A list that grows by one each time the table's adapter runs."""
    calls = []
    table.adapter.register_forward_hook(lambda *args: calls.append(1))
    return calls


def skip_step(net):
    """The optimizer does nothing (e.g. GradScaler skipping a step on inf gradients)."""
    for p in net.parameters():
        p.grad = None


def fused_adamw_step(net):
    """A real update that leaves the parameters' version counters unchanged."""
    torch.optim.AdamW(net.parameters(), lr=1e-2, fused=True).step()


@pytest.mark.parametrize("model", ["TextSASRec", "TextGRU4Rec"])
@pytest.mark.parametrize("step", [skip_step, fused_adamw_step])
def test_next_batch_trains_after_a_step_that_leaves_parameter_versions(model, step, games_root):
    net, _, train, _, _ = build(model, games_root)
    calls = count_table_builds(net.item_embedding)
    batches = iter(train)
    first = net.calculate_loss(next(batches))
    assert len(calls) == 1  # input rows and scores share one table per forward
    first.backward()
    step(net)
    second = net.calculate_loss(next(batches))  # failed: backward through a freed graph
    second.backward()
    assert len(calls) == 2
    assert net.item_embedding.adapter.linear.weight.grad.abs().sum() > 0


def test_evaluation_reuses_the_table_until_parameters_change(games_root):
    net, _, train, _, test = build("TextSASRec", games_root)
    table = net.item_embedding
    calls = count_table_builds(table)
    net.eval()
    users = [batch[0] for batch in test]
    with torch.no_grad():
        first = net.full_sort_predict(users[0])
        net.full_sort_predict(users[0])
        assert len(calls) == 1  # cached across evaluation batches
        table.adapter.linear.bias.add_(1.0)  # changed in place
        moved = net.full_sort_predict(users[0])
        assert len(calls) == 2 and not torch.allclose(first, moved)
    # a training epoch with an update that keeps version counters (fused AdamW), then evaluation
    net.train()
    net.calculate_loss(next(iter(train))).backward()
    fused_adamw_step(net)
    net.eval()
    with torch.no_grad():
        assert torch.equal(table.weight, table.adapter(table.text_emb))
