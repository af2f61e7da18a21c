"""SCFT (LLMEmb): attribute prompts, dropped views, the loss, training and resuming."""
import json
import math
import os
import random
import shutil

import pytest
import torch

from pretrain import common, scft
from pretrain.common import read_item_titles
from pretrain.stage_config import ConfigError, parse_stage_args


def with_attributes(root, dataset="Games"):
    """Give the slice's `.item` two more text columns (brand, a token; categories, a token_seq,
    empty for every fifth item). Returns `root`."""
    path = os.path.join(root, dataset, f"{dataset}.item")
    tokens, titles = read_item_titles(path)
    rows = ["item_id:token\ttitle:token_seq\tbrand:token\tprice:float\tcategories:token_seq\n"]
    for i, (tok, title) in enumerate(zip(tokens, titles)):
        categories = "" if i % 5 == 0 else f"Video Games, Genre {i % 3}"
        rows.append(f"{tok}\t{title}\tBrand{i % 4}\t9.99\t{categories}\n")
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(rows)
    return root


@pytest.fixture(scope="module")
def games_attrs(tmp_path_factory):
    from slices import write_slice

    return with_attributes(write_slice(tmp_path_factory.mktemp("attrs"), "Games", 12))


def item_file(root, dataset="Games"):
    return os.path.join(root, dataset, f"{dataset}.item")


def test_prompt_has_the_title_first_and_every_text_column_but_the_id(games_attrs):
    tokens, attributes, columns = common.read_item_attributes(item_file(games_attrs))
    assert columns == ["title", "brand", "categories"]  # price is a float column
    title = read_item_titles(item_file(games_attrs))[1][0]
    assert attributes[0] == [("title", title), ("brand", "Brand0")]  # empty categories left out
    assert common.item_prompt(attributes[1]) == (
        f"The item has the following attributes: \n title is "
        f"{read_item_titles(item_file(games_attrs))[1][1]}; brand is Brand1; "
        f"categories is Video Games, Genre 1")


def test_views_drop_the_configured_ratio_of_attributes_in_order():
    attributes = [(f"a{i}", f"value {i}") for i in range(5)]
    rng = random.Random(0)
    for ratio, kept in [(0.0, 5), (0.4, 3), (0.5, 3), (0.99, 1)]:
        views = [scft.drop_view(attributes, ratio, rng) for _ in range(50)]
        assert all(len(v) == kept for v in views)
        assert all(v == sorted(v) and set(v) <= set(attributes) for v in views)
    assert len({tuple(scft.drop_view(attributes, 0.4, rng)) for _ in range(200)}) == 10  # C(5,3)


def test_title_only_items_drop_the_ratio_of_title_words():
    rng = random.Random(0)
    title = [("title", "one two three four five six seven eight nine ten")]
    for ratio, kept in [(0.4, 6), (0.25, 8), (0.95, 1)]:
        for _ in range(20):
            (name, value), = scft.drop_view(title, ratio, rng)
            words = value.split()
            assert name == "title" and len(words) == kept
            assert words == [w for w in title[0][1].split() if w in words]  # order kept
    assert scft.drop_view([("title", "Anno")], 0.9, rng) == [("title", "Anno")]


@pytest.mark.parametrize("fixture", ["games", "games_attrs"])
def test_no_view_is_ever_an_empty_prompt(fixture, request, tiny_tokenizer):
    root = request.getfixturevalue(fixture)
    _, attributes, _ = common.read_item_attributes(item_file(root))
    collator = scft.SCFTCollator(tiny_tokenizer, drop_ratio=0.9, max_length=64, seed=1)
    prompts = collator.views([{"attributes": a} for a in attributes])
    assert len(prompts) == 2 * len(attributes)
    for prompt in prompts:
        instruction, body = prompt.split("\n ", 1)
        assert instruction == "The item has the following attributes: "
        assert body.startswith(("title is ", "brand is ", "categories is "))
        assert all(part.split(" is ", 1)[1].strip() for part in body.split("; "))
    batch = collator([{"attributes": a} for a in attributes[:3]])
    assert batch["input_ids"].shape[0] == 6 and batch["attention_mask"][:, 0].all()


def test_the_title_only_log_line_is_said_once(games, tmp_path, capsys):
    cfg = parse_stage_args("scft", ["--run_dir", str(tmp_path), "--datasets", "Games",
                                    "--data_path", games, "--model", "m"])
    features, stats = scft.load_items(cfg)
    said = capsys.readouterr().out
    assert said.count("only a title column") == 1 and "40% of the title's words" in said
    assert stats["single_attribute_items"] == len(features) == stats["Games"]["distinct_prompts"]


def test_loss_is_symmetric_infonce_over_cosines():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    r = 1 / math.sqrt(2)  # cos(a0, b0) = cos(a1, b0) = r; cos(a0, b1) = 0; cos(a1, b1) = 1
    a_to_b = (-r + math.log(math.exp(r) + 1)) + (-1 + math.log(math.exp(r) + math.e))
    b_to_a = (-r + math.log(2 * math.exp(r))) + (-1 + math.log(1 + math.e))
    expected = (a_to_b / 2 + b_to_a / 2) / 2
    assert scft.symmetric_contrastive_loss(a, b, 1.0).item() == pytest.approx(expected, rel=1e-6)


ARGS = ["--datasets", "Games", "--max_length", "48", "--batch_size", "8",
        "--micro_batch_size", "8", "--learning_rate", "1e-3", "--warmup_steps", "0",
        "--logging_steps", "1", "--report_to", "none", "--max_steps", "6", "--save_steps", "3"]


def test_loss_falls_resume_restores_the_temperature_and_final_is_merged(
        tiny_llama_dir, games_attrs, tmp_path, capsys):
    args = ["--model", tiny_llama_dir, "--run_dir", str(tmp_path), "--data_path", games_attrs,
            *ARGS]
    final = scft.main(args)
    state = json.load(open(f"{final}/trainer_state.json"))
    logged = [e for e in state["log_history"] if "loss" in e]
    assert len(logged) == 6
    assert logged[-1]["temperature"] != pytest.approx(0.05, rel=1e-4)  # trained
    # The loss falls: on the same fixed views, the trained model at its learned temperature
    # scores lower than the backbone at the initial 0.05. (Each logged step's loss is of other
    # items, so their first and last steps differ by batch more than by training.)
    cfg = parse_stage_args("scft", args)
    tokenizer, dataset, _ = scft.prepare(cfg)
    assert (fixed_views_loss(final, logged[-1]["temperature"], cfg, tokenizer, dataset)
            < fixed_views_loss(tiny_llama_dir, 0.05, cfg, tokenizer, dataset))
    assert not any("lora" in name for name in tensor_names(final))  # LoRA merged at save
    assert json.load(open(f"{final}/provenance.json"))["stage"] == "scft"

    # Killed after the step-3 checkpoint: the rerun resumes there, temperature included.
    saved = json.load(open(tmp_path / "scft" / "checkpoint-3" / scft.TEMPERATURE_FILE))
    shutil.rmtree(final)
    shutil.rmtree(tmp_path / "scft" / "checkpoint-6")
    capsys.readouterr()
    trainer, _ = scft.make_trainer(cfg, tokenizer, dataset)
    trainer.create_optimizer_and_scheduler(num_training_steps=cfg.max_steps)
    trainer._load_optimizer_and_scheduler(str(tmp_path / "scft" / "checkpoint-3"))
    assert float(trainer.log_temperature) == pytest.approx(saved["log_temperature"])
    assert float(trainer.log_temperature) != pytest.approx(math.log(0.05))
    scft.main(args)
    assert "resuming from" in capsys.readouterr().out
    state = json.load(open(f"{final}/trainer_state.json"))
    assert state["global_step"] == 6 and state["log_history"][:3] == logged[:3]


def test_lora_adapters_come_from_the_seed_not_from_what_ran_before(tiny_llama_dir, tmp_path):
    from pretrain.models import load_backbone
    from pretrain.training import apply_lora

    def adapters(seed, global_seed):
        cfg = parse_stage_args("scft", ["--run_dir", str(tmp_path), "--datasets", "Games",
                                        "--model", tiny_llama_dir, "--seed", str(seed)])
        model = load_backbone(tiny_llama_dir, bidirectional=False, attn_implementation="eager")
        torch.manual_seed(global_seed)
        model = apply_lora(model, cfg)
        drawn_next = torch.rand(3)  # the process's RNG is where it was
        torch.manual_seed(global_seed)
        assert torch.equal(drawn_next, torch.rand(3))
        return {n: p.detach() for n, p in model.named_parameters() if "lora_A" in n}

    first, again, other = adapters(42, 0), adapters(42, 1), adapters(43, 0)
    assert first and first.keys() == again.keys() == other.keys()
    assert all(torch.equal(first[n], again[n]) for n in first)
    assert not any(torch.equal(first[n], other[n]) for n in first)


def fixed_views_loss(folder, temperature, cfg, tokenizer, dataset):
    """Mean SCFT loss of model `folder` (eval mode) over the items' batches of `cfg.batch_size`,
    the views drawn by a collator of seed 0 (the same views for every call)."""
    from pretrain.encoder_pooling import pool
    from pretrain.models import load_backbone

    model = load_backbone(folder, bidirectional=False, attn_implementation="eager").eval()
    collator = scft.SCFTCollator(tokenizer, cfg.drop_ratio, cfg.max_length, seed=0)
    items, size, losses = dataset.features, cfg.batch_size, []
    with torch.no_grad():
        for start in range(0, len(items) - size + 1, size):
            batch = collator(items[start:start + size])
            hidden = model(**batch)[0]
            a, b = pool(hidden, batch["attention_mask"], "mean").chunk(2)
            losses.append(scft.symmetric_contrastive_loss(a, b, temperature).item())
    return sum(losses) / len(losses)


def tensor_names(folder):
    from safetensors import safe_open

    with safe_open(f"{folder}/model.safetensors", "pt") as fh:
        return set(fh.keys())


def test_bad_settings_are_refused_before_loading(games, tiny_llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="drop_ratio"):
        parse_stage_args("scft", ["--run_dir", str(tmp_path), "--datasets", "Games",
                                  "--drop_ratio", "1.0"])
    cfg = parse_stage_args("scft", ["--run_dir", str(tmp_path), "--datasets", "Games",
                                    "--data_path", games, "--model", tiny_llama_dir, "--batch_size", "4096",
                                    "--micro_batch_size", "4096"])
    with pytest.raises(ConfigError, match="distinct items"):
        scft.prepare(cfg)


def test_llmemb_pipeline_trains_scft_alone_and_extracts_the_same_prompt_and_pooling(
        tiny_llama_dir, games_attrs, tmp_path, capsys):
    from transformers import AutoModel, AutoTokenizer

    from pretrain import pipeline
    from recbole_llm2rec.feat import read_feat

    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    raw = pipeline.read_yaml(os.path.join(repo, "pretrain", "configs",
                                          "llmemb-smollm2-135m_cpu.yaml"))
    assert pipeline.stage_configs(raw)["scft"].model == raw["backbone"]  # from the backbone
    raw = pipeline.apply_overrides(raw, [
        f"--backbone={tiny_llama_dir}", f"--run_dir={tmp_path}", f"--data_path={games_attrs}",
        "--report_to=[]", "--attn_implementation=eager", "--scft.max_steps=2",
        "--scft.batch_size=4", "--scft.micro_batch_size=4", "--scft.save_steps=1",
        "--extract.datasets=[Games]", "--extract.batch_tokens=64"])
    path, = pipeline.run(raw)
    meta = json.load(open(path + ".json"))
    assert (meta["prompt"], meta["pooling"], meta["attention"]) == ("llmemb", "mean", "causal")
    assert meta["backbone"] == str(tmp_path / "scft" / "final")
    tokens, rows = read_feat(path)
    _, prompts = common.item_prompts(item_file(games_attrs))
    # By hand: the SCFT model, causal, mean over every token of the full prompt.
    tokenizer = AutoTokenizer.from_pretrained(meta["backbone"])
    model = AutoModel.from_pretrained(meta["backbone"]).eval()
    for i in (0, 7):
        ids = tokenizer(prompts[i], truncation=True, max_length=64, return_tensors="pt")
        with torch.no_grad():
            expected = model(**ids).last_hidden_state[0].mean(0).numpy()
        assert rows[i] == pytest.approx(expected, abs=1e-4)
    capsys.readouterr()
    pipeline.run(raw)  # nothing changed: nothing redone
    said = capsys.readouterr().out
    assert "scft/final is complete and up to date" in said and "is up to date" in said
