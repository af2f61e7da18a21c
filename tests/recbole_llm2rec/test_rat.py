"""`adapter_type: rat` (LLMEmb's RAT): PCA and its cache, the adapter, the alignment with a
trained SASRec, and what it may and may not train."""
import math
import os

import numpy as np
import pytest
import torch
from recbole.data import create_dataset, data_preparation

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.feat import feat_path, read_feat, write_feat
from recbole_llm2rec.model import rat
from recbole_llm2rec.quick_start import build_config, run
from test_models import SMALL


def test_pca_keeps_the_top_variance_directions_and_rebuilds_a_rank_k_matrix():
    rng = np.random.default_rng(0)
    # Rank 3 in 10 dimensions, variances ~ 9, 4, 1 along three orthonormal axes.
    axes = np.linalg.qr(rng.normal(size=(10, 3)))[0].T  # [3, 10]
    scores = rng.normal(size=(200, 3)) * [3.0, 2.0, 1.0]
    rows = scores @ axes + rng.normal(size=10)
    mean, components, ratio = rat.fit_pca(rows, 3)
    assert np.all(np.diff(ratio) < 0) and ratio.sum() == pytest.approx(1.0)
    assert np.abs(components @ axes.T) == pytest.approx(np.eye(3), abs=0.05)  # same axes, in order
    rebuilt = (rows - mean) @ components.T @ components + mean
    assert rebuilt == pytest.approx(rows, abs=1e-9)
    _, _, fewer = rat.fit_pca(rows, 2)
    assert fewer == pytest.approx(ratio[:2])


def write_table(folder, rows, name="emb"):
    path = feat_path(folder, "D", name)
    write_feat(path, [f"i{k}" for k in range(len(rows))], rows)
    return path


def test_pca_is_fitted_once_cached_beside_the_feat_and_refitted_when_it_changes(tmp_path,
                                                                                  monkeypatch):
    rows = np.random.default_rng(1).normal(size=(30, 8))
    path = write_table(str(tmp_path), rows)
    fits = []
    real_fit = rat.fit_pca
    monkeypatch.setattr(rat, "fit_pca", lambda *a: fits.append(a[1]) or real_fit(*a))
    config = {"rat_pca_size": 5}
    table = np.vstack([np.zeros(8), read_feat(path)[1]])  # row 0 = padding
    first = rat.reduce_table(table, path, config)
    assert first.shape == (31, 5) and not first[0].any()
    assert os.path.isfile(path + rat.PCA_SUFFIX) and fits == [5]
    assert np.array_equal(rat.reduce_table(table, path, config), first) and fits == [5]
    rat.reduce_table(table, path, {"rat_pca_size": 4})  # another size: refitted
    assert fits == [5, 4]
    write_table(str(tmp_path), rows * 2)  # new content, same name: the cache is stale
    rat.reduce_table(table, path, {"rat_pca_size": 4})
    assert fits == [5, 4, 4]
    assert rat.reduce_table(table, path, {"rat_pca_size": 1536}).shape == (31, 8)  # <= width


def test_alignment_loss_equals_a_hand_computed_value():
    adapted = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    teacher = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    # dot products / 2: rows = adapted i, columns = teacher j
    s = [[1.0, 0.0, 0.5], [0.0, 0.5, -0.5], [1.0, 0.5, 0.0]]
    lse = lambda xs: math.log(sum(math.exp(x) for x in xs))  # noqa: E731
    rows = sum(lse(s[i]) - s[i][i] for i in range(3)) / 3
    cols = sum(lse([s[k][j] for k in range(3)]) - s[j][j] for j in range(3)) / 3
    value = rat.alignment_loss(adapted, teacher, 2.0).item()
    assert value == pytest.approx((rows + cols) / 2, rel=1e-6)


@pytest.fixture(scope="module")
def teacher(games_root, tmp_path_factory):
    """Checkpoint of an ID-based SASRec trained one epoch by our runner on the Games slice."""
    out = run("SASRec", "Games", config_dict={
        **SMALL, "data_path": games_root, "epochs": 1, "text_emb": None,
        "checkpoint_dir": str(tmp_path_factory.mktemp("teacher"))})
    return out["model_file"]


def rat_settings(games_root, checkpoint, **more):
    return {**SMALL, "data_path": games_root, "adapter_type": "rat", "rat_pca_size": 16,
            "rat_teacher_checkpoint": checkpoint, **more}


def build(model, settings):
    config, cls = build_config(model, "Games", config_dict=settings)
    train, _, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return cls(config, train._dataset), train


@pytest.mark.parametrize("model", ["TextSASRec", "TextGRU4Rec"])
def test_alignment_alone_trains_the_adapter_and_nothing_frozen(model, games_root, teacher):
    net, train = build(model, rat_settings(games_root, teacher, rat_alpha=1.0))
    table = net.item_embedding
    assert isinstance(table.adapter, rat.RATAdapter) and table.text_emb.shape[1] == 16
    assert [layer.weight.shape for layer in table.adapter.net] == [(8, 16), (32, 8)]
    state = torch.load(teacher, weights_only=True)["state_dict"]["item_embedding.weight"]
    assert torch.equal(table.alignment.teacher, state)
    frozen, teacher_rows = table.text_emb.clone(), table.alignment.teacher.clone()
    batch = next(iter(train))
    net.zero_grad()
    table.auxiliary_loss(batch).backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    assert all(grads[f"item_embedding.adapter.net.{i}.{w}"].abs().sum() > 0
               for i in (0, 1) for w in ("weight", "bias"))
    assert not table.text_emb.requires_grad and not table.alignment.teacher.requires_grad
    assert not any(t is table.text_emb or t is table.alignment.teacher
                   for t in net.parameters())  # buffers: no optimizer ever sees them
    net.zero_grad()
    torch.manual_seed(1)  # the same dropout masks in both
    plain = type(net).__mro__[2].calculate_loss(net, batch).item()  # SASRec's / GRU4Rec's own
    torch.manual_seed(1)
    loss = net.calculate_loss(batch)  # the model's loss includes the alignment term
    assert loss.item() == pytest.approx(plain + table.auxiliary_loss(batch).item(), rel=1e-5)
    loss.backward()
    torch.optim.Adam(net.parameters(), lr=0.1).step()
    assert torch.equal(table.text_emb, frozen)
    assert torch.equal(table.alignment.teacher, teacher_rows)


def edited(checkpoint, tmp_path, edit):
    """A copy of `checkpoint` changed by `edit(dict)`. Returns its path."""
    state = torch.load(checkpoint, weights_only=True)
    edit(state)
    path = str(tmp_path / "teacher.pth")
    torch.save(state, path)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["config"].update(model="GRU4Rec"), "model is 'GRU4Rec', this run needs 'SASRec'"),
    (lambda s: s["config"].update(dataset="Beauty"), "dataset is 'Beauty', this run needs 'Games'"),
    (lambda s: s["state_dict"].update({"item_embedding.weight": s["state_dict"][
        "item_embedding.weight"][:-1]}), "item count is"),
    (lambda s: s["state_dict"].update({"item_embedding.weight": s["state_dict"][
        "item_embedding.weight"][:, :16]}), "hidden size is 16, this run needs 32"),
    (lambda s: s.update(format="other"), "not a checkpoint written by recbole_llm2rec"),
])
def test_a_mismatched_teacher_is_a_one_line_error_naming_the_file(edit, message, games_root,
                                                                   teacher, tmp_path):
    path = edited(teacher, tmp_path, edit)
    with pytest.raises(InputError, match=message) as err:
        build("TextSASRec", rat_settings(games_root, path))
    assert str(err.value).startswith(path) and "\n" not in str(err.value)


def test_missing_teacher_is_an_error_unless_alignment_is_off(games_root, tmp_path):
    with pytest.raises(InputError, match="checkpoint file not found") as err:
        build("TextSASRec", rat_settings(games_root, str(tmp_path / "none.pth")))
    assert str(tmp_path / "none.pth") in str(err.value)
    with pytest.raises(InputError, match="rat_teacher_checkpoint"):
        build("TextSASRec", rat_settings(games_root, None))
    net, _ = build("TextSASRec", rat_settings(games_root, None, rat_alpha=0))
    assert net.item_embedding.alignment is None
    with pytest.raises(InputError, match="rat_temperature"):
        build("TextSASRec", rat_settings(games_root, None, rat_temperature=0))


def test_one_epoch_of_text_sasrec_with_rat_through_the_runner(games_root, teacher, tmp_path):
    out = run("TextSASRec", "Games", config_dict=rat_settings(
        games_root, teacher, epochs=1, checkpoint_dir=str(tmp_path)))
    assert out["test_result"]["recall@10"] >= 0 and out["model"].item_embedding.alignment
    assert os.path.isfile(feat_path(os.path.join(games_root, "Games"), "Games", "rand")
                          + rat.PCA_SUFFIX)


def test_the_alignment_uses_the_batch_s_distinct_target_items(games_root, teacher):
    net, _ = build("TextSASRec", rat_settings(games_root, teacher, rat_alpha=0.5,
                                              rat_temperature=3.0))
    table = net.item_embedding
    targets = {"item_id": torch.tensor([2, 5, 2, 0, 9])}  # a repeat and the padding id
    rows = torch.tensor([2, 5, 9])
    expected = 0.5 * rat.alignment_loss(table.weight[rows], table.alignment.teacher[rows], 3.0)
    assert table.auxiliary_loss(targets).item() == pytest.approx(expected.item(), rel=1e-6)
