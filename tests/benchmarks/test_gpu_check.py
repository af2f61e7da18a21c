"""benchmarks/gpu_check.py's CPU dry run (`--device cpu --steps 2`) with a tiny random Qwen2 on
a real Games slice: every stage, extraction and a TextSASRec epoch run and land in the table;
an error writes its row and fails the command."""
import os
import subprocess
import sys

from benchmarks import gpu_check
from slices import write_slice
from tiny_llm import save_tiny_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_dry_run_on_cpu_writes_every_row(tmp_path):
    data = write_slice(str(tmp_path / "data"), "Games", 60)
    model = save_tiny_model(tmp_path / "tiny", "qwen2")
    out = tmp_path / "check.md"
    rows = gpu_check.main(["--device", "cpu", "--steps", "2", "--batch_size", "8",
                           "--max_length", "32", "--model", model, "--data_path", data,
                           "--run_dir", str(tmp_path / "runs"), "--out", str(out)])
    assert [r[0].split(":")[0] for r in rows] == ["csft", "mntp", "ic", "scft",
                                                  "extract Games", "TextSASRec on Games"]
    text = out.read_text()
    assert text.count("\n| ") == 1 + 6 and "steps/s" in text and "items/s" in text
    assert "test recall@10 0." in text and "float32" in text
    assert os.path.isfile(os.path.join(data, "Games", "Games.gpucheck.feat"))


def test_an_error_is_loud_and_recorded(tmp_path):
    out = tmp_path / "check.md"
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--device", "cpu",
                           "--model", str(tmp_path), "--data_path", str(tmp_path), "--out",
                           str(out), "--run_dir", str(tmp_path / "runs")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "Traceback" in proc.stderr
    assert "| FAILED |" in out.read_text()


def test_reproduce_configs_are_the_papers_step_counts_and_four_runs():
    from benchmarks.experiments.spec import load_experiment
    from pretrain.pipeline import stage_configs
    from pretrain.stage_config import read_yaml

    ours = stage_configs(read_yaml(gpu_check.REPRODUCE_PIPELINE))
    paper = stage_configs(read_yaml(os.path.join(ROOT, "pretrain", "configs",
                                                 "qwen2-0.5b_amazon.yaml")))
    assert list(ours) == ["csft", "mntp", "ic"]
    for stage, cfg in ours.items():
        assert (cfg.max_steps, cfg.batch_size) == (paper[stage].max_steps, paper[stage].batch_size)
        assert cfg.datasets == ["Games", "Electronics", "Clothing", "Books"]
    runs = load_experiment(gpu_check.REPRODUCE_EXPERIMENT).runs()
    assert sorted((r.dataset, r.variant) for r in runs) == [
        ("Beauty", "-"), ("Beauty", "text+id"), ("Games", "-"), ("Games", "text+id")]


def test_reproduce_prints_its_estimate_first_and_stops_over_the_budget(tmp_path, capsys):
    import pytest

    data = write_slice(str(tmp_path / "data"), "Games", 500)
    model = save_tiny_model(tmp_path / "tiny", "qwen2")
    out = tmp_path / "check.md"
    with pytest.raises(SystemExit, match="exceeds --budget_min 0.01"):
        gpu_check.main(["--reproduce", "--device", "cpu", "--probe_steps", "1", "--model", model,
                        "--data_path", data, "--probe_datasets", "Games", "--budget_min", "0.01",
                        "--run_dir", str(tmp_path / "runs"), "--out", str(out)])
    said = capsys.readouterr().out
    assert said.index("estimate") < said.index("csft: 10000 steps ~") < said.index("total ~")
    table = out.read_text()
    for stage, steps in (("csft", 10000), ("mntp", 1000), ("ic", 1000)):
        assert f"probe {stage}: 1 steps" in table and f"{steps} steps ~" in table
    assert "| FAILED |" in table  # the stop is recorded too
