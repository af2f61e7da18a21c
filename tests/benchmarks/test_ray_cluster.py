"""Experiment runs and a search on a real two-node Ray cluster on this machine
(`ray.cluster_utils.Cluster`: a head without CPUs and worker nodes, each its own raylet and
worker processes, started from their own working directory): every record, checkpoint and table
lands in the driver's folders, a node that cannot see the data folder fails in one line naming
it, a run whose node is killed is retried and resumes, and a search's trial whose node is
killed is reported as failed."""
import glob
import json
import os
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from recbole_llm2rec.feat import feat_path, write_feat
from slices import write_slice

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Node death is noticed after health_check_failure_threshold missed checks; the defaults (3 s
# period, 10 s timeout) declare live nodes dead on this loaded machine.
HEALTH = {"RAY_health_check_period_ms": "2000", "RAY_health_check_timeout_ms": "20000",
          "RAY_health_check_failure_threshold": "5"}
ENV = {"OMP_NUM_THREADS": "1", "PYTHONPATH": REPO}


def add_worker_node(cluster, cwd, last_byte):
    """A worker node of 1 CPU at 127.0.0.<last_byte>, started in `cwd` (its workers' cwd). The
    head keeps the machine's address, so a driver here attaches to the head's raylet, never to
    a worker node's that the test kills (a driver whose raylet dies loses all its tasks)."""
    here = os.getcwd()
    os.chdir(cwd)
    try:
        return cluster.add_node(num_cpus=1, node_ip_address=f"127.0.0.{last_byte}")
    finally:
        os.chdir(here)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """(Cluster with a CPU-less head and two 1-CPU worker nodes, the workers' cwd)."""
    from ray.cluster_utils import Cluster

    worker_cwd = tmp_path_factory.mktemp("worker_cwd")
    saved = {k: os.environ.get(k) for k in {**HEALTH, **ENV}}
    os.environ.update({**HEALTH, **ENV})
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "include_dashboard": False})
    nodes = [add_worker_node(cluster, worker_cwd, 2), add_worker_node(cluster, worker_cwd, 3)]
    cluster.wait_for_nodes()
    cluster.worker_cwd, cluster.workers = str(worker_cwd), nodes
    yield cluster
    cluster.shutdown()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = write_slice(str(tmp_path_factory.mktemp("data")), "Games", 120)
    with open(os.path.join(root, "Games", "Games.item"), encoding="utf-8") as fh:
        tokens = [line.split("\t")[0] for line in fh.readlines()[1:]]
    write_feat(feat_path(os.path.join(root, "Games"), "Games", "rand"), tokens,
               np.random.default_rng(0).normal(size=(len(tokens), 8)))
    return root


def experiment(folder, data, name="cluster", epochs=30):
    path = folder / f"{name}.yaml"
    path.write_text(f"""
name: {name}
data_path: {data}
results_dir: {folder / 'results'}
saved_dir: {folder / 'saved'}
datasets: [Games]
models: [SASRec, TextSASRec]
embedders: [rand]
seeds: [0]
recbole: {{epochs: {epochs}, stopping_step: 100, train_batch_size: 256, hidden_size: 16,
          inner_size: 32, n_layers: 1}}
""")
    return str(path)


def outputs(folder):
    """Records, checkpoints and tables under `folder`."""
    return sorted(p for ext in ("json", "pth", "md", "csv")
                  for p in glob.glob(os.path.join(folder, "**", f"*.{ext}"), recursive=True))


@pytest.mark.slow  # minutes: Ray runs and trials, two nodes' deaths noticed
def test_runs_and_search_on_two_nodes(cluster, data, tmp_path):
    driver_cwd = tmp_path / "driver_cwd"
    driver_cwd.mkdir()
    config = experiment(tmp_path, data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.experiments", "--config", config,
         "--address", cluster.address], cwd=driver_cwd, env={**os.environ, **ENV},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    # both runs are training (each has validated an epoch) when one worker node is killed
    deadline = time.time() + 240
    while len(glob.glob(str(tmp_path / "saved" / "cluster" / "*" / "resume.pth"))) < 2:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[0][-3000:]
        time.sleep(0.2)
    cluster.remove_node(cluster.workers[0], allow_graceful=False)  # SIGKILL its processes
    out, _ = proc.communicate(timeout=420)
    assert proc.returncode == 0, out[-3000:]
    runs = tmp_path / "results" / "cluster"
    records = [json.loads((runs / name).read_text()) for name in sorted(os.listdir(runs))
               if name.endswith(".json")]
    assert [(r["model"], r["text_emb"]) for r in records] == [("SASRec", "-"),
                                                               ("TextSASRec", "rand")]
    # the run on the killed node ran again on the other one, resuming after its last epoch
    resumed = [r["resumed_after_epoch"] for r in records if r["resumed_after_epoch"] is not None]
    assert len(resumed) == 1 and resumed[0] >= 0, records
    for record in records:
        checkpoint = os.path.normpath(os.path.join(REPO, record["checkpoint"]))
        assert record["epochs_run"] == 30 and os.path.isfile(checkpoint)
        assert checkpoint.startswith(str(tmp_path / "saved" / "cluster") + os.sep)
    assert (tmp_path / "results" / "cluster.md").is_file()  # the table, written by the driver

    # a two-trial search through --address, on the other node plus a new one; the node of one
    # trial is killed while both train: that trial is reported as failed, the other completes
    cluster.workers.append(add_worker_node(cluster, cluster.worker_cwd, 4))
    cluster.wait_for_nodes()
    space = tmp_path / "space.yaml"
    space.write_text("learning_rate: {loguniform: [1.0e-3, 1.0e-2]}\n")
    search = subprocess.Popen(
        [sys.executable, "-m", "recbole_llm2rec.tune", "--model", "SASRec", "--dataset",
         "Games", "--space", str(space), "--num-samples", "2", "--cpus", "1", "--seed", "0",
         "--grace-period", "30", "--address", cluster.address, "--output", "search",
         f"--data_path={data}", "--epochs=30", "--stopping_step=100", "--hidden_size=16",
         "--inner_size=32", "--n_layers=1"],
        cwd=driver_cwd, env={**os.environ, **ENV}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True)
    pattern = str(driver_cwd / "search" / "ray" / "trial_*" / "checkpoints" / "*.pth")
    deadline = time.time() + 240
    while len(glob.glob(pattern)) < 2:
        assert search.poll() is None and time.time() < deadline, search.communicate()[0][-3000:]
        time.sleep(0.2)
    cluster.remove_node(cluster.workers[1], allow_graceful=False)
    out, _ = search.communicate(timeout=420)
    assert search.returncode == 0, out[-3000:]
    table = pd.read_csv(driver_cwd / "search" / "results.csv")
    assert sorted(table["status"]) == ["completed", "error"], table.to_dict("records")
    failed = table[table["status"] == "error"].iloc[0]
    assert isinstance(failed["error"], str) and failed["error"], failed.to_dict()
    done = table[table["status"] == "completed"].iloc[0]
    assert done["epochs"] == 30
    (checkpoint,) = glob.glob(str(driver_cwd / "search" / "ray" / done["trial"] /
                                  "checkpoints" / "*.pth"))
    assert (driver_cwd / "search" / "best_config.yaml").is_file()
    assert "| error |" in (driver_cwd / "search" / "results.md").read_text()
    # nothing landed in the workers' working directory
    assert outputs(cluster.worker_cwd) == []


@pytest.mark.slow
def test_a_node_without_the_data_folder_fails_in_one_line(cluster, data, tmp_path, monkeypatch):
    from benchmarks.experiments import execute
    from benchmarks.experiments.spec import load_experiment
    from recbole_llm2rec.errors import InputError

    exp = load_experiment(experiment(tmp_path, data, epochs=1))
    missing = str(tmp_path / "not-shared")
    exp.data_path = missing  # as if the driver's folder were not mounted on the nodes
    monkeypatch.setattr(execute, "prepare", lambda exp: None)  # the driver's own check
    with pytest.raises(InputError) as err:
        execute.run_all(exp, address=cluster.address)
    message = str(err.value)
    # named: the worker node that ran it (not the driver's machine address)
    assert "\n" not in message and message.startswith(f"{missing}: not found on Ray node 127.0.0.")
    assert "shared" in message
    assert not os.path.exists(tmp_path / "results")
