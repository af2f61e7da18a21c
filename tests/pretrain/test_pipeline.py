"""Pipeline: yaml + dotted overrides, early input checks, csft -> mntp -> ic -> extract."""
import os

import pytest
import yaml

from pretrain import pipeline
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
            "extract": {"name": "llm2rec", "datasets": ["Games", "Beauty"], "batch_size": 8}}


def test_shipped_configs_resolve():
    for name in ("qwen2-0.5b_amazon.yaml", "smollm2-135m_cpu.yaml"):
        raw = pipeline.read_yaml(os.path.join(REPO, "pretrain", "configs", name))
        configs = pipeline.stage_configs(raw)
        assert configs["mntp"].model is None and configs["csft"].model == raw["backbone"]
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


def test_bad_settings_fail_before_any_stage(tiny_qwen2_dir, data, tmp_path):
    raw = tiny_config(tiny_qwen2_dir, tmp_path / "run", data)
    with pytest.raises(ConfigError, match="unknown top-level setting.*'sed'"):
        pipeline.run(dict(raw, sed=3))
    with pytest.raises(ConfigError, match="unknown setting 'max_step' for MNTPConfig"):
        pipeline.run(apply_overrides(raw, ["--mntp.max_step=3"]))
    with pytest.raises(ConfigError, match="mask token '<mask>' is not in the vocabulary"):
        pipeline.run(apply_overrides(raw, ["--mntp.mask_token=<mask>"]))
    with pytest.raises(ValueError, match="Toys.item: item file not found"):
        pipeline.run(apply_overrides(raw, ["--extract.datasets=[Games, Toys]"]))
    assert not (tmp_path / "run").exists()


def test_pipeline_writes_feat_files_and_rerun_skips(tiny_qwen2_dir, data, tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config(tiny_qwen2_dir, tmp_path / "run", data)))
    paths = pipeline.main(["--config", str(config), "--ic.max_steps=3"])
    for stage in ("csft", "mntp", "ic"):
        for name in ("final/model.safetensors", "final/tokenizer.json", "config.yaml",
                     "data_stats.json"):
            assert os.path.isfile(tmp_path / "run" / stage / name), (stage, name)
    ic_cfg = yaml.safe_load(open(tmp_path / "run" / "ic" / "config.yaml"))
    assert ic_cfg["max_steps"] == 3 and ic_cfg["model"] is None
    for path, dataset in zip(paths, ("Games", "Beauty")):
        tokens, emb = read_feat(path)
        item_file = os.path.join(data, dataset, f"{dataset}.item")
        assert sorted(tokens) == sorted(line.split("\t")[0] for line in
                                        open(item_file).read().splitlines()[1:])
        assert emb.shape[1] == 32
    mtimes = [os.path.getmtime(p) for p in paths]
    capsys.readouterr()
    pipeline.main(["--config", str(config), "--ic.max_steps=3"])
    out = capsys.readouterr().out
    assert out.count("nothing to do") == 3
    assert [os.path.getmtime(p) for p in paths] == mtimes
