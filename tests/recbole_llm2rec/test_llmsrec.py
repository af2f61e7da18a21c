"""LLMSRec on a real 12-user Games slice, with tiny random Llama/Qwen2 backbones and a SASRec
teacher trained for one epoch by our runner."""
import math
import os

import pytest
import torch

import run_recbole
from recbole.data import create_dataset, data_preparation
from recbole.data.interaction import Interaction

from recbole_llm2rec import quick_start
from recbole_llm2rec.compat import get_trainer
from recbole_llm2rec.errors import InputError, cli_main
from recbole_llm2rec.model.llmsrec_losses import (distill_losses, in_batch_candidates, in_history,
                                                  retrieval_loss, sample_negatives, uniformity)
from recbole_llm2rec.model.llmsrec_prompts import HISTORY_EMB, USER_OUT
from recbole_llm2rec.quick_start import build_config, run
from slices import write_slice
from tiny_llm import ARCHS, save_tiny_model

N_USERS = 12
TEACHER = {"hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1, "epochs": 1,
           "MAX_ITEM_LIST_LENGTH": 5, "train_batch_size": 256, "show_progress": False}
SMALL = {"MAX_ITEM_LIST_LENGTH": 5, "llmsrec_mlp_hidden_size": 16, "llmsrec_llm_batch_size": 16,
         "train_batch_size": 64, "show_progress": False}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_slice(str(tmp_path_factory.mktemp("data")), "Games", N_USERS)


@pytest.fixture(scope="module")
def teacher(root, tmp_path_factory):
    """A SASRec checkpoint written by our runner after one epoch on the slice."""
    out = str(tmp_path_factory.mktemp("teacher"))
    result = run("SASRec", "Games", config_dict={**TEACHER, "data_path": root,
                                                 "checkpoint_dir": out})
    return result["model_file"]


@pytest.fixture(scope="module", params=ARCHS)
def llm(request, tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp(f"tiny-{request.param}"), request.param)


def build(root, llm, teacher, **overrides):
    config, cls = build_config("LLMSRec", "Games", config_dict={
        **SMALL, "data_path": root, "llm_path": llm, "teacher_checkpoint": teacher, **overrides})
    train, valid, _ = data_preparation(config, create_dataset(config))
    torch.manual_seed(0)
    return cls(config, train._dataset), train, valid


def first_batch(train, size=8):
    batch = next(iter(train))
    return batch[torch.arange(size)]


def test_history_slots_get_f_I_outputs_and_nothing_else(root, llm, teacher):
    net, train, _ = build(root, llm, teacher)
    batch = first_batch(train)
    prompt_ids, histories = net.user_prompts(batch)
    width = max(map(len, prompt_ids))
    pad = net.tokenizer.pad_token_id
    ids = torch.tensor([p + [pad] * (width - len(p)) for p in prompt_ids])
    items = torch.tensor([i for h in histories for i in h])
    embeds = net.embed_prompts(ids, items, net.user_out)

    slots = ids == net.marker_ids[HISTORY_EMB]
    outs = ids == net.marker_ids[USER_OUT]
    assert slots.sum(1).tolist() == [len(h) for h in histories] == batch["item_length"].tolist()
    assert outs.sum(1).tolist() == [1] * len(batch)
    expected = net.f_I(net.teacher.item_embedding.weight[items])
    assert torch.equal(embeds[slots], expected)  # in row-major slot order: item k at slot k
    assert torch.equal(embeds[outs], net.user_out.expand(len(batch), -1))
    rest = ~(slots | outs)
    plain = net.llm.get_input_embeddings()(ids.masked_fill(~rest, pad))
    assert torch.equal(embeds[rest], plain[rest])
    assert not torch.isclose(embeds[slots], plain[slots]).all(-1).any()


def test_prompt_text(root, llm, teacher):
    net, train, _ = build(root, llm, teacher)
    row = first_batch(train, 1)
    text = net.tokenizer.decode(net.user_prompts(row)[0][0])
    n = int(row["item_length"][0])
    assert text.count(HISTORY_EMB) == n and text.endswith("representation token:" + USER_OUT)
    assert text.count("Item No.") == n and f"Item No.{n}, Time: " in text
    assert f'"{net.titles[int(row["item_id_list"][0, 0])]}"{HISTORY_EMB}' in text


def test_one_step_trains_mlps_and_tokens_only(root, llm, teacher):
    net, train, _ = build(root, llm, teacher, llmsrec_train_all_prefixes=True)
    names = {n for n, _ in net.named_parameters()}
    assert {n.split(".")[0] for n in names} == {"f_I", "f_user", "f_item", "f_cf_user",
                                                "user_out", "item_out"}
    assert set(net.state_dict()) == names  # the LLM and the teacher stay out of checkpoints
    llm_before = {k: v.clone() for k, v in net.llm.state_dict().items()}
    teacher_before = {k: v.clone() for k, v in net.teacher.state_dict().items()}
    params_before = {n: p.detach().clone() for n, p in net.named_parameters()}
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    losses = net.calculate_loss(first_batch(train))
    assert len(losses) == 3 and all(torch.isfinite(v) for v in losses)
    sum(losses).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    opt.step()
    for name, p in net.named_parameters():
        assert not torch.equal(p, params_before[name]), name
    assert all(not p.requires_grad for p in net.llm.parameters())
    assert all(torch.equal(v, llm_before[k]) for k, v in net.llm.state_dict().items())
    assert all(torch.equal(v, teacher_before[k]) for k, v in net.teacher.state_dict().items())


def test_gradient_checkpointing_gives_the_same_gradients_and_keeps_less(root, llm, teacher):
    batch = None
    grads, kept = {}, {}
    for on in (False, True):
        net, train, _ = build(root, llm, teacher, llmsrec_train_all_prefixes=True,
                              llmsrec_gradient_checkpointing=on)
        batch = first_batch(train) if batch is None else batch
        calls = []
        recompute = net.llm._gradient_checkpointing_func if on else None
        if on:  # count the layer calls that go through checkpointing
            net.llm._gradient_checkpointing_func = lambda *a, **k: calls.append(1) or recompute(
                *a, **k)
        saved = []  # bytes autograd keeps for the backward pass (outside checkpointed layers)
        with torch.autograd.graph.saved_tensors_hooks(
                lambda t: saved.append(t.numel() * t.element_size()) or t, lambda t: t):
            loss = sum(net.calculate_loss(batch))
        loss.backward()
        assert len(calls) == (net.llm.config.num_hidden_layers * 2 if on else 0)  # users, items
        assert not any(m.training for m in net.llm.modules())  # the LLM stays in eval mode
        grads[on] = {n: p.grad.clone() for n, p in net.named_parameters()}
        kept[on] = sum(saved)
    for name, grad in grads[False].items():
        assert grad.abs().sum() > 0, name
        assert torch.allclose(grads[True][name], grad, rtol=1e-4, atol=1e-6), name
    assert kept[True] < kept[False] / 2, kept


def test_default_trains_on_each_users_last_training_item(root, llm, teacher):
    net, train, _ = build(root, llm, teacher)
    data = train._dataset.inter_feat
    rows = net.training_rows(data)
    users = data["user_id"][rows].tolist()
    assert sorted(users) == sorted(set(data["user_id"].tolist()))  # one row per user
    for row, user in zip(rows.tolist(), users):
        own = (data["user_id"] == user).nonzero().flatten()
        assert row == int(own.max())  # the user's last row (rows are in time order)


def test_distill_and_uniformity_by_hand():
    user = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    cf = torch.tensor([[0.0, 1.0], [1.0, 1.0], [-1.0, 0.0]])
    un = [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]
    s = 1 / math.sqrt(2)
    cn = [[0.0, 1.0], [s, s], [-1.0, 0.0]]
    mse = sum((a - b) ** 2 for ru, rc in zip(un, cn) for a, b in zip(ru, rc)) / 6

    def mean_kernel(x):
        pairs = [(0, 1), (0, 2), (1, 2)]
        return sum(math.exp(-2 * sum((a - b) ** 2 for a, b in zip(x[i], x[j])))
                   for i, j in pairs) / 3

    # the reference's form: MSE over users x dimensions, log-free uniformity (paper Eq. 3)
    distill, uniform = distill_losses(user, cf, reduction="mean")
    assert distill.item() == pytest.approx(mse, rel=1e-6)
    assert uniform.item() == pytest.approx(mean_kernel(un) + mean_kernel(cn), rel=1e-6)
    # the default: squared distance summed over the dimensions (2 - 2 cos), mean over users
    summed, _ = distill_losses(user, cf)
    assert summed.item() == pytest.approx(2 * mse, rel=1e-6)  # 2 dimensions
    cos = [sum(a * b for a, b in zip(ru, rc)) for ru, rc in zip(un, cn)]
    assert summed.item() == pytest.approx(sum(2 - 2 * c for c in cos) / 3, rel=1e-6)
    _, with_log = distill_losses(user, cf, log=True)
    assert with_log.item() == pytest.approx(
        math.log(mean_kernel(un)) + math.log(mean_kernel(cn)), rel=1e-6)
    assert uniformity(torch.ones(1, 2)).item() == 0.0


def test_retrieval_candidates_by_hand():
    user = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    reps = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    candidates = torch.tensor([[0, 1, 2], [1, 0, 2]])  # target first
    # row 0: scores 2, 0, 1; row 1: 3, 0, 1; row 1's item 2 is in its history: left out
    blocked = torch.tensor([[False, False, False], [False, False, True]])
    expected = (-math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(1)))
                - math.log(math.exp(3) / (math.exp(3) + 1))) / 2
    assert retrieval_loss(user, reps, candidates, blocked).item() == pytest.approx(expected)
    histories = torch.tensor([[5, 7, 0], [7, 0, 0]])
    items = torch.tensor([[7, 6, 5], [0, 7, 6]])
    assert in_history(histories, items).tolist() == [[True, False, True], [False, True, False]]
    # in-batch: each row's own target first, the other distinct targets after, those in the
    # row's history blocked
    items, candidates, blocked = in_batch_candidates(torch.tensor([5, 7, 5]),
                                                     torch.tensor([[7, 1], [2, 0], [3, 0]]))
    assert items.tolist() == [5, 7]
    assert candidates.tolist() == [[0, 1], [1, 0], [0, 1]]
    assert blocked.tolist() == [[False, True], [False, False], [False, False]]


def test_sampled_negatives_avoid_the_history_and_the_target():
    histories = torch.tensor([[1, 2, 3, 0], [4, 5, 0, 0]])
    targets = torch.tensor([4, 6])
    gen = torch.Generator().manual_seed(0)
    negatives = sample_negatives(histories, targets, 9, 3, generator=gen)  # items 1..8
    assert negatives.shape == (2, 3)
    assert set(negatives[0].tolist()) <= {5, 6, 7, 8}
    assert set(negatives[1].tolist()) <= {1, 2, 3, 7, 8}
    with pytest.raises(ValueError, match="cannot draw negatives"):
        sample_negatives(torch.tensor([[1, 2]]), torch.tensor([3]), 4, 1)


def test_catalogue_cached_until_a_parameter_changes(root, llm, teacher):
    net, train, valid = build(root, llm, teacher, llmsrec_train_all_prefixes=True)
    first = net.catalogue()
    assert first.shape == (net.n_items, 128) and torch.equal(first[0], torch.zeros(128))
    assert net.catalogue() is first  # reused
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    sum(net.calculate_loss(first_batch(train))).backward()
    opt.step()
    second = net.catalogue()
    assert second is not first and not torch.allclose(second, first)
    with torch.no_grad():
        fresh = net.item_representations(list(range(1, 9)))
    assert torch.allclose(second[1:9], fresh, atol=1e-5)
    # sampled scoring (uni100) agrees with full-sort scores
    batch = next(iter(valid))[0]
    candidates = batch.repeat(3)  # each user's row three times, with other items
    candidates.update(Interaction({"item_id": torch.randint(1, net.n_items, (len(candidates),))}))
    with torch.no_grad():
        full = net.full_sort_predict(batch)
        sampled = net.predict(candidates)
    rows = torch.arange(len(candidates)) % len(batch)
    assert torch.allclose(sampled, full[rows, candidates["item_id"]], atol=1e-5)


@pytest.mark.parametrize("change, message", [
    ({"model": "GRU4Rec"}, "model is 'GRU4Rec', this run needs 'SASRec'"),
    ({"dataset": "Beauty"}, "dataset is 'Beauty', this run needs 'Games'"),
    ({"MAX_ITEM_LIST_LENGTH": 3}, "history length (MAX_ITEM_LIST_LENGTH) is 3, this run needs "
                                  "at least 5"),
])
def test_teacher_of_another_model_or_dataset_is_one_line_error(root, llm, teacher, tmp_path,
                                                               change, message):
    ckpt = torch.load(teacher, weights_only=True)
    ckpt["config"].update(change)
    bad = str(tmp_path / "bad.pth")
    torch.save(ckpt, bad)
    with pytest.raises(InputError) as err:
        build(root, llm, bad)
    assert str(err.value).startswith(bad) and message in str(err.value)
    assert "\n" not in str(err.value)


def test_teacher_with_another_item_count_is_one_line_error(tmp_path, llm, teacher):
    other = write_slice(str(tmp_path), "Games", N_USERS - 4)  # same name, fewer items
    with pytest.raises(InputError) as err:
        build(other, llm, teacher)
    assert str(err.value).startswith(teacher) and "item count is" in str(err.value)
    assert "\n" not in str(err.value)


def test_llm_folder_without_weights_or_tokenizer(root, llm, teacher, tmp_path):
    for missing, message in (("model.safetensors", "no model weights"),
                             ("tokenizer.json", "no tokenizer")):
        folder = tmp_path / missing
        folder.mkdir()
        for name in os.listdir(llm):
            if name != missing:
                os.symlink(os.path.join(llm, name), folder / name)
        with pytest.raises(InputError, match=message) as err:
            build(root, str(folder), teacher)
        assert str(err.value).startswith(str(folder))


def test_dataset_without_titles(root, llm, teacher):
    with pytest.raises(InputError, match="needs item titles") as err:
        build(root, llm, teacher, load_col={"inter": ["user_id", "item_id", "timestamp"]})
    assert str(err.value).startswith(os.path.join(root, "Games", "Games.item"))


def drop_column(path, name):
    """Rewrite atomic file `path` without its column `name` (header `name:<type>`)."""
    with open(path, encoding="utf-8") as fh:
        rows = [line.rstrip("\n").split("\t") for line in fh]
    keep = [i for i, col in enumerate(rows[0]) if col.split(":")[0] != name]
    assert len(keep) == len(rows[0]) - 1
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines("\t".join(row[i] for i in keep) + "\n" for row in rows)


NO_TIMES = "{'inter': ['user_id', 'item_id'], 'item': ['item_id', 'title']}"
NO_TITLES = "{'inter': ['user_id', 'item_id', 'timestamp'], 'item': ['item_id']}"


@pytest.mark.parametrize("file, column, extra, message", [
    # the generic atomic-file check of quick_start.check_data (the run orders by time)
    ("inter", "timestamp", [], "no 'timestamp' column (header fields: ['user_id', 'item_id'])"),
    # a dataset without timestamps, run with time ordering off: LLMSRec's own preflight
    ("inter", "timestamp", ["--TIME_FIELD=None", f"--load_col={NO_TIMES}"],
     "field 'TIME_FIELD' = None: LLMSRec needs interaction timestamps"),
    ("item", "title", [], "field 'title': LLMSRec needs item titles (its prompts show them): "
                          "no such column (header fields: ['item_id'])"),
    ("item", None, [f"--load_col={NO_TITLES}"],
     "field 'title': LLMSRec needs item titles (its prompts show them): the column is not loaded"),
])
def test_dataset_without_titles_or_timestamps_stops_before_recbole_reads_it(
        tmp_path, teacher, monkeypatch, capsys, file, column, extra, message):
    data = write_slice(str(tmp_path), "Games", N_USERS)
    path = os.path.join(data, "Games", f"Games.{file}")
    if column:
        drop_column(path, column)
    llama = save_tiny_model(tmp_path / "llama", "llama")
    err = cli_error(monkeypatch, capsys, data, llama, teacher, *extra)
    assert err.startswith(f"run_recbole.py: error: {path}: ") and message in err, err


def test_bad_llm_folder_or_teacher_stops_before_recbole_reads_the_data(
        root, teacher, tmp_path, monkeypatch, capsys):
    llama = save_tiny_model(tmp_path / "llama", "llama")
    os.remove(os.path.join(llama, "model.safetensors"))
    err = cli_error(monkeypatch, capsys, root, llama, teacher)
    assert err.startswith(f"run_recbole.py: error: {llama}: no model weights"), err
    ckpt = torch.load(teacher, weights_only=True)
    ckpt["config"]["dataset"] = "Beauty"
    other = str(tmp_path / "beauty.pth")
    torch.save(ckpt, other)
    err = cli_error(monkeypatch, capsys, root, save_tiny_model(tmp_path / "ok", "llama"), other)
    assert err.startswith(f"run_recbole.py: error: {other}: field 'teacher_checkpoint': teacher "
                          f"mismatch: dataset is 'Beauty'"), err


def cli_error(monkeypatch, capsys, data, llm, teacher, *extra):
    """The one line `run_recbole.py --model=LLMSRec ...` exits with (status 2), asserting that
    RecBole was never asked to build the dataset."""
    def no_dataset(config):
        raise AssertionError("RecBole was asked to build the dataset")

    monkeypatch.setattr(quick_start, "create_dataset", no_dataset)
    argv = ["--model=LLMSRec", "--dataset=Games", f"--data_path={data}", f"--llm_path={llm}",
            f"--teacher_checkpoint={teacher}", "--MAX_ITEM_LIST_LENGTH=5", *extra]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli_main(run_recbole.main, "run_recbole.py", argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    return err.strip()


def test_end_to_end_one_epoch(root, llm, teacher, tmp_path):
    result = run("LLMSRec", "Games", config_dict={
        **SMALL, "data_path": root, "llm_path": llm, "teacher_checkpoint": teacher,
        "epochs": 1, "checkpoint_dir": str(tmp_path)})
    assert set(result["test_result"]) == {"recall@10", "recall@20", "ndcg@10", "ndcg@20"}
    saved = torch.load(result["model_file"], weights_only=True)
    assert {k.split(".")[0] for k in saved["state_dict"]} == {
        "f_I", "f_user", "f_item", "f_cf_user", "user_out", "item_out"}
    # a fresh model resumes from the checkpoint through RecBole's trainer
    config, cls = build_config("LLMSRec", "Games", config_dict={
        **SMALL, "data_path": root, "llm_path": llm, "teacher_checkpoint": teacher})
    train, _, _ = data_preparation(config, create_dataset(config))
    net = cls(config, train._dataset)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    trainer.resume_checkpoint(result["model_file"])
    assert trainer.start_epoch == 1
    # the reference's Adam betas, and its learning-rate decay after the epoch
    group = trainer.optimizer.param_groups[0]
    assert group["betas"] == (0.9, 0.98)
    assert group["lr"] == pytest.approx(config["learning_rate"] * 0.95)
    assert all(torch.equal(v, saved["state_dict"][k]) for k, v in net.state_dict().items())


def test_sampled_uni100_evaluation_runs(root, llm, teacher, tmp_path):
    eval_args = {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                 "mode": "uni100"}
    result = run("LLMSRec", "Games", config_dict={
        **SMALL, "data_path": root, "llm_path": llm, "teacher_checkpoint": teacher,
        "epochs": 1, "checkpoint_dir": str(tmp_path), "eval_args": eval_args})
    assert result["config"]["eval_args"]["mode"]["test"] == "uni100"
    assert 0.0 <= result["test_result"]["recall@10"] <= 1.0
