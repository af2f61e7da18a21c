"""Pipeline: yaml + dotted overrides, early input checks, csft -> mntp -> ic -> extract,
provenance (what changed is redone, the rest kept), one-line errors from every entry point."""
import glob
import json
import os
import re
import runpy
import subprocess
import sys
import warnings

import numpy as np
import pytest
import yaml

from pretrain import pipeline
from pretrain.provenance import fingerprint
from pretrain.stage_config import ConfigError, apply_overrides
from recbole_llm2rec.feat import read_feat

from slices import write_slice

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = dict(max_steps=2, batch_size=4, micro_batch_size=4, max_length=32, save_steps=1,
            logging_steps=1, warmup_steps=0, learning_rate=1e-3)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Games (training) and Beauty (out-of-domain) slices in one folder."""
    folder = tmp_path_factory.mktemp("data")
    write_slice(folder, "Games", 8)
    return write_slice(folder, "Beauty", 5)


def tiny_config(model, run_dir, data):
    """A pipeline dict for the tiny model (2 steps per stage)."""
    return {"backbone": model, "run_dir": str(run_dir), "data_path": data,
            "datasets": ["Games"], "report_to": [], "attn_implementation": "eager",
            "csft": dict(TINY), "mntp": dict(TINY), "ic": dict(TINY),
            "extract": {"name": "llm2rec", "datasets": ["Games", "Beauty"], "batch_tokens": 64}}


def test_shipped_configs_resolve():
    for name in ("qwen2-0.5b_amazon.yaml", "smollm2-135m_cpu.yaml"):
        raw = pipeline.read_yaml(os.path.join(REPO, "pretrain", "configs", name))
        configs = pipeline.stage_configs(raw)
        assert list(configs) == ["csft", "mntp", "ic"] and configs["csft"].model == raw["backbone"]
        assert configs["mntp"].model == os.path.join(raw["run_dir"], "csft", "final")
        assert configs["ic"].model == os.path.join(raw["run_dir"], "mntp", "final")
        pipeline.extract_argv(raw, "final")
    raw = pipeline.read_yaml(os.path.join(REPO, "pretrain", "configs", "qwen2-0.5b_amazon.yaml"))
    configs = pipeline.stage_configs(raw)
    assert (configs["csft"].learning_rate, configs["csft"].batch_size) == (3e-4, 128)
    assert (configs["ic"].temperature, configs["ic"].batch_size) == (0.2, 256)
    assert configs["mntp"].mask_token == "_" and configs["mntp"].mlm_probability == 0.2


def test_dotted_overrides():
    raw = {"seed": 1, "csft": {"max_steps": 10}, "datasets": ["A"]}
    out = apply_overrides(raw, ["--csft.max_steps=200", "--seed", "7", "--mntp.lora_r=null",
                                "--datasets=[Games, Beauty]"])
    assert out == {"seed": 7, "csft": {"max_steps": 200}, "mntp": {"lora_r": None},
                   "datasets": ["Games", "Beauty"]}
    assert raw["csft"]["max_steps"] == 10  # the input dict is not modified
    with pytest.raises(ConfigError, match="has no value"):
        apply_overrides(raw, ["--csft.max_steps"])
    with pytest.raises(ConfigError) as err:
        apply_overrides(raw, ["--csft.max_steps=[1"])
    assert (err.value.field, err.value.value) == ("csft.max_steps", "[1")
    assert str(err.value).startswith("field 'csft.max_steps' = '[1': override is not a valid yaml")


def test_stages_list(tiny_qwen2_dir, tmp_path):
    raw = {"backbone": tiny_qwen2_dir, "run_dir": str(tmp_path), "datasets": ["Games"],
           "stages": ["mntp", "ic"]}
    configs = pipeline.stage_configs(raw)  # LLM2Vec: MNTP starts from the backbone
    assert list(configs) == ["mntp", "ic"] and configs["mntp"].model == tiny_qwen2_dir
    assert configs["ic"].model == os.path.join(str(tmp_path), "mntp", "final")
    for bad, why in ((["csft", "dpo"], "field 'stages' = 'dpo': unknown stage (known: csft, "
                                       "mntp, ic, scft)"),
                     (["ic", "ic"], "a stage is listed twice"), ([], "non-empty list")):
        with pytest.raises(ConfigError, match=why.replace("(", r"\(").replace(")", r"\)")):
            pipeline.stage_configs(dict(raw, stages=bad))


def test_bad_settings_fail_before_any_stage(tiny_qwen2_dir, data, tmp_path):
    raw = tiny_config(tiny_qwen2_dir, tmp_path / "run", data)
    with pytest.raises(ConfigError, match="unknown top-level setting.*'sed'"):
        pipeline.run(dict(raw, sed=3))
    with pytest.raises(ConfigError, match="unknown setting 'max_step' for MNTPConfig"):
        pipeline.run(apply_overrides(raw, ["--mntp.max_step=3"]))
    with pytest.raises(ConfigError, match="mask_token' = '<mask>': this mask token is not in"):
        pipeline.run(apply_overrides(raw, ["--mntp.mask_token=<mask>"]))
    with pytest.raises(ValueError, match="Toys.item: item file not found"):
        pipeline.run(apply_overrides(raw, ["--extract.datasets=[Games, Toys]"]))
    assert not (tmp_path / "run").exists()


def embed_again(model, data, dataset, tokens):
    """Embeddings [N, H] of the titles of items `tokens`, extracted here from `model`."""
    from pretrain.common import read_item_titles
    from pretrain.extract import embed_texts, load_encoder

    item_tokens, titles = read_item_titles(os.path.join(data, dataset, f"{dataset}.item"))
    title = dict(zip(item_tokens, titles))
    net, tokenizer, _ = load_encoder(model, device="cpu")
    return embed_texts(net, tokenizer, [title[t] for t in tokens], batch_tokens=16)[0]


def printed(capsys, prefix):
    """Lines of captured stdout starting with `prefix`."""
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith(prefix)]


def test_pipeline_writes_feat_files_and_redoes_only_what_changed(tiny_qwen2_dir, data,
                                                                   tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    run = tmp_path / "run"
    config.write_text(yaml.safe_dump(tiny_config(tiny_qwen2_dir, run, data)))
    paths = pipeline.main(["--config", str(config), "--ic.max_steps=3"])
    for stage in ("csft", "mntp", "ic"):
        for name in ("final/model.safetensors", "final/tokenizer.json", "final/provenance.json",
                     "config.yaml", "data_stats.json", "provenance.json"):
            assert os.path.isfile(run / stage / name), (stage, name)
    ic_cfg = yaml.safe_load(open(run / "ic" / "config.yaml"))
    assert ic_cfg["max_steps"] == 3 and ic_cfg["model"] == str(run / "mntp" / "final")
    made = json.load(open(run / "mntp" / "final" / "provenance.json"))
    assert made["input_fingerprint"] == fingerprint(str(run / "csft" / "final"))
    ic_final = str(run / "ic" / "final")
    for path, dataset in zip(paths, ("Games", "Beauty")):
        tokens, emb = read_feat(path)
        item_file = os.path.join(data, dataset, f"{dataset}.item")
        assert sorted(tokens) == sorted(line.split("\t")[0] for line in
                                        open(item_file).read().splitlines()[1:])
        assert emb.shape[1] == 32
        meta = json.load(open(path + ".json"))
        assert (meta["backbone"], meta["model_fingerprint"]) == (ic_final, fingerprint(ic_final))
        # The rows are ic/final's embeddings of each item's title, matched by token.
        rows = [len(tokens) - 1, 0, 2]
        again = embed_again(ic_final, data, dataset, [tokens[i] for i in rows])
        assert np.allclose(emb[rows], again, atol=1e-4)
    before = {p: open(p, "rb").read() for p in paths}
    prints = {s: fingerprint(str(run / s / "final")) for s in ("csft", "mntp", "ic")}
    capsys.readouterr()
    # Unchanged config: nothing is redone or rewritten.
    mtimes = [os.path.getmtime(p) for p in paths]
    pipeline.main(["--config", str(config), "--ic.max_steps=3"])
    out = capsys.readouterr().out
    assert out.count("up to date; nothing to do") == 5 and "redoing" not in out
    assert [os.path.getmtime(p) for p in paths] == mtimes
    # More CSFT steps: CSFT, then MNTP and IC (their input changed), then the .feat files.
    pipeline.main(["--config", str(config), "--ic.max_steps=3", "--csft.max_steps=3"])
    out = capsys.readouterr().out
    assert "[csft] redoing: max_steps 2 -> 3;" in out
    for stage, previous in (("mntp", "csft"), ("ic", "mntp")):
        assert f"[{stage}] redoing: input model {run / previous / 'final'} changed" in out
    assert out.count("[extract] redoing") == 2
    for stage in ("csft", "mntp", "ic"):  # the old outputs are kept, unchanged
        old, = glob.glob(str(run / f"{stage}.old-*"))
        assert fingerprint(os.path.join(old, "final")) == prints[stage]
        assert fingerprint(str(run / stage / "final")) != prints[stage]
    for path in paths:
        old = [p for p in glob.glob(path + ".old-*") if not p.endswith(".json")]
        assert len(old) == 1 and open(old[0], "rb").read() == before[path]
        assert os.path.isfile(old[0] + ".json")
        assert open(path, "rb").read() != before[path]
        assert json.load(open(path + ".json"))["model_fingerprint"] == fingerprint(ic_final)


def test_llm2vec_stages_start_mntp_from_the_backbone(tiny_qwen2_dir, data, tmp_path):
    raw = dict(tiny_config(tiny_qwen2_dir, tmp_path / "run", data), stages=["mntp", "ic"])
    raw["extract"].update(datasets=["Beauty"], name="llm2vec")
    for stage in ("mntp", "ic"):
        raw[stage]["max_steps"] = 1
    path, = pipeline.run(raw)
    assert sorted(os.listdir(tmp_path / "run")) == ["ic", "mntp"]
    made = json.load(open(tmp_path / "run" / "mntp" / "final" / "provenance.json"))
    assert (made["input_model"], made["input_fingerprint"]) == (tiny_qwen2_dir,
                                                                fingerprint(tiny_qwen2_dir))
    assert json.load(open(path + ".json"))["backbone"] == str(tmp_path / "run" / "ic" / "final")


BAD_INPUT = [  # (file content or None, arguments, what the one line says)
    ("backbone: m\nrun_dir: r\ncsft:\n  max_steps: [1\n  seed: 2\n", [],
     r"bad.yaml:5: not valid yaml: expected ',' or '\]'"),
    ("backbone: m\n", ["--csft.max_steps=[1"],
     r"field 'csft.max_steps' = '\[1': override is not a valid yaml value"),
    ("backbone: m\nstages: [csft, dpo]\n", [], r"field 'stages' = 'dpo': unknown stage"),
]


@pytest.mark.parametrize("content, extra, message", BAD_INPUT)
def test_bad_pipeline_input_is_one_line(tmp_path, capsys, content, extra, message):
    from recbole_llm2rec.errors import cli_main

    (tmp_path / "bad.yaml").write_text(content)
    with pytest.raises(SystemExit) as exit_:
        cli_main(pipeline.main, "python -m pretrain.pipeline",
                 ["--config", str(tmp_path / "bad.yaml"), *extra])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("python -m pretrain.pipeline: error: ")
    assert re.search(message, err), err


@pytest.mark.parametrize("module", ["pipeline", "csft", "mntp", "ic"])
def test_entry_points_answer_bad_input_in_one_line(tmp_path, capsys, monkeypatch, module):
    (tmp_path / "bad.yaml").write_text("seed: [1\n")
    monkeypatch.setattr(sys, "argv", [module, "--config", str(tmp_path / "bad.yaml")])
    with pytest.raises(SystemExit) as exit_, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "found in sys.modules": it is imported
        runpy.run_module(f"pretrain.{module}", run_name="__main__")
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err == f"python -m pretrain.{module}: error: {tmp_path / 'bad.yaml'}:2: not valid yaml: " \
                  f"expected ',' or ']', but got '<stream end>'\n"


def test_pipeline_command_has_no_traceback(tmp_path):
    (tmp_path / "bad.yaml").write_text("backbone: m\n")
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, "-m", "pretrain.pipeline", "--config",
                           str(tmp_path / "bad.yaml"), "--csft.max_steps=[1"], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("python -m pretrain.pipeline: error: field 'csft.max_steps' = '[1': "
                           "override is not a valid yaml value: expected ',' or ']', but got "
                           "'<stream end>'\n")


def test_stage_ablation_extracts_each_stage_from_one_run(tiny_qwen2_dir, tmp_path, capsys):
    """extract.stages: <name>_csft/_mntp and <name> (the last stage, IC) from each stage's final/,
    nothing retrained."""
    data = write_slice(str(tmp_path / "data"), "Games", 8)
    raw = tiny_config(tiny_qwen2_dir, tmp_path / "run", data)
    raw["extract"].update(datasets=["Games"], stages=["csft", "mntp", "ic"])
    with pytest.raises(ConfigError, match=r"field 'extract.stages' = 'scft': not a stage of"):
        pipeline.run(apply_overrides(raw, ["--extract.stages=[csft, scft]"]))
    assert not (tmp_path / "run").exists()  # refused before any training
    paths = pipeline.run(raw)
    assert [os.path.basename(p) for p in paths] == [
        "Games.llm2rec_csft.feat", "Games.llm2rec_mntp.feat", "Games.llm2rec.feat"]
    tables = []
    for path, stage in zip(paths, ("csft", "mntp", "ic")):
        tokens, emb = read_feat(path)
        final = str(tmp_path / "run" / stage / "final")
        meta = json.load(open(path + ".json"))
        assert (meta["backbone"], meta["model_fingerprint"]) == (final, fingerprint(final))
        rows = [len(tokens) - 1, 3, 0]  # by token, in another order than the file's
        assert np.allclose(emb[rows], embed_again(final, data, "Games",
                                                  [tokens[i] for i in rows]), atol=1e-4)
        tables.append(emb)
    for a in range(3):
        for b in range(a + 1, 3):
            assert np.abs(tables[a] - tables[b]).max() > 1e-3
    mtimes = {s: os.path.getmtime(tmp_path / "run" / s / "final" / "model.safetensors")
              for s in ("csft", "mntp", "ic")}
    capsys.readouterr()
    # Rerun, and a plain extract of the last stage added: no stage is retrained.
    raw["extract"]["stages"] = ["csft", "mntp", "ic"]
    pipeline.run(raw)
    out = capsys.readouterr().out
    assert out.count("up to date; nothing to do") == 6 and "redoing" not in out
    plain = dict(raw, extract={k: v for k, v in raw["extract"].items() if k != "stages"})
    path, = pipeline.run(plain)
    assert np.array_equal(read_feat(path)[1], tables[2])
    assert mtimes == {s: os.path.getmtime(tmp_path / "run" / s / "final" / "model.safetensors")
                      for s in ("csft", "mntp", "ic")}


def test_ablation_configs_match_the_llm2rec_cpu_run():
    """LLM2Vec = the LLM2Rec CPU run's MNTP and IC without CSFT; the data-ablation configs = its
    CSFT on other datasets (the full mix is that very run, reused)."""
    from pretrain.stage_config import result_settings

    def load(name):
        raw = pipeline.read_yaml(os.path.join(REPO, "pretrain", "configs", name))
        return raw, pipeline.stage_configs(raw)

    main_raw, main = load("smollm2-135m_cpu.yaml")
    raw, vec = load("llm2vec-smollm2-135m_cpu.yaml")
    assert list(vec) == ["mntp", "ic"] and vec["mntp"].model == raw["backbone"]
    for stage in ("mntp", "ic"):
        assert result_settings(vec[stage]) == result_settings(main[stage])
    datasets = {}
    for setting in ("single", "mix2", "mix4"):
        raw, csft = load(f"csft-{setting}-smollm2-135m_cpu.yaml")
        assert list(csft) == ["csft"] and raw["extract"]["name"] == f"csft_{setting}"
        other = dict(result_settings(csft["csft"]), datasets=main["csft"].datasets)
        assert other == result_settings(main["csft"])
        datasets[setting] = csft["csft"].datasets
    assert datasets == {"single": ["Games"], "mix2": ["Games", "Electronics"],
                        "mix4": main["csft"].datasets}
    assert load("csft-mix4-smollm2-135m_cpu.yaml")[1]["csft"].run_dir == main_raw["run_dir"]
