"""Training one run and writing its record; all pending runs, in turn or in parallel through Ray.

A run's record (one JSON file, written atomically once the run has finished) holds: model,
dataset, text_emb, variant, seed, overrides, test (the test metrics of all test cases, at full
precision: the one source of a run's test metrics, see `test_metrics`), test_source,
best_valid, epochs_run, best_epoch, epoch_cap, valid_curve, resumed_after_epoch, analyses (see
recbole_llm2rec.evaluation.evaluate_test; its full-ranking "all" is `test`), cold_start (the
protocol, when used), checkpoint, wall_s (this attempt's), finished, machine, command. A killed run has no record; it runs again
and its training resumes after its last validated epoch (`RESUME_FILE` beside its checkpoints).
"""
import json
import os
import time

from benchmarks.experiments.spec import ROOT
from benchmarks.machine import machine
from recbole_llm2rec.feat import atomic_write_text

RESUME_FILE = "resume.pth"  # in the run's checkpoint folder while it trains
# Where a record's `test` comes from; records written before it existed hold RecBole's.
TEST_SOURCE = "recbole_llm2rec.evaluation (full ranking, ties averaged, full precision)"
RECBOLE_SOURCE = "RecBole's evaluator (rounded to 4 decimals)"


def test_metrics(analyses):
    """{"test": the metrics of all test cases under full ranking, "test_source", "analyses":
    the rest}, from `evaluate_test`'s report: a record's test metrics, computed once."""
    full = dict(analyses["full"])
    return {"test": full.pop("all"), "test_source": TEST_SOURCE,
            "analyses": {**analyses, "full": full}}


def run_settings(exp, run):
    """(RecBole settings, dataset name to load, cold-start manifest or None) of `run`."""
    from recbole_llm2rec.evaluation import cold_start as cs

    settings = exp.settings(run)
    settings["checkpoint_dir"] = os.path.join(exp.saved_dir, exp.name,
                                              run.file_name[:-len(".json")])
    if not exp.cold_start:
        return settings, run.dataset, None
    c = exp.cold_start
    dataset = cs.write_cold_start_dataset(exp.data_path, run.dataset, c["fraction"], c["seed"],
                                          out_path=c["data_path"])
    settings.update(cs.cold_start_config(c["data_path"], dataset, c["protocol"]))
    return settings, dataset, {**cs.read_manifest(c["data_path"], dataset),
                               "protocol": c["protocol"]}


def analyse(exp, run, model, data, train_data, test_data, cold):
    """The experiment's analyses of a trained model (see evaluate_test)."""
    from recbole_llm2rec.evaluation import cold_start as cs
    from recbole_llm2rec.evaluation import evaluate_test

    cold_ids = None if cold is None else cs.cold_item_ids(data, cold["cold_items"])
    return evaluate_test(model, data, train_data, test_data, exp.analyses, cold_items=cold_ids,
                         seed=run.seed)


def train_and_evaluate(exp, run, command=""):
    """Train `run`, test it and run the experiment's analyses. Returns its record; `command` is
    the command line recorded in it."""
    from recbole_llm2rec.quick_start import run as recbole_run

    start = time.time()
    settings, dataset, cold = run_settings(exp, run)
    out = recbole_run(run.model, dataset, config_dict=settings,
                      resume_path=os.path.join(settings["checkpoint_dir"], RESUME_FILE))
    curve = out["valid_scores"]  # the config's valid_metric (props: Recall@20), every epoch
    data, train_data, _, test_data = out["data"]
    analyses = analyse(exp, run, out["model"], data, train_data, test_data, cold)
    return {
        "model": run.model, "dataset": run.dataset, "text_emb": run.text_emb,
        "variant": run.variant, "seed": run.seed,
        "overrides": exp.variant_settings(run) if run.variant in exp.variants else {},
        **test_metrics(analyses),
        "best_valid": {k: float(v) for k, v in out["best_valid_result"].items()},
        "epochs_run": len(curve),
        "best_epoch": 1 + curve.index(max(curve)) if curve else None,
        "epoch_cap": int(out["config"]["epochs"]),
        "valid_curve": curve,
        "resumed_after_epoch": out["resumed_after"],
        "cold_start": None if cold is None else {
            k: cold[k] for k in ("name", "fraction", "seed", "protocol", "n_items", "n_users",
                                 "kept_interactions", "cold_test_cases")},
        "checkpoint": os.path.relpath(out["model_file"], ROOT) if out["model_file"] else None,
        "wall_s": round(time.time() - start, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": machine(),
        "command": command,
    }


def reanalyse(exp, run, record):
    """Recompute a finished run's test metrics and analyses from its checkpoint (no training):
    the record with new `test`, `analyses` and `analysed` (when), or None when the checkpoint
    is gone."""
    import torch
    from recbole.data import create_dataset, data_preparation

    from recbole_llm2rec.quick_start import build_config

    path = os.path.join(ROOT, record.get("checkpoint") or "-")
    if not os.path.isfile(path):
        return None
    settings, dataset, cold = run_settings(exp, run)
    config, model_class = build_config(run.model, dataset, config_dict=settings)
    data = create_dataset(config)
    train_data, _, test_data = data_preparation(config, data)
    model = model_class(config, train_data._dataset).to(config["device"])
    state = torch.load(path, map_location=config["device"], weights_only=True)
    model.load_state_dict(state["state_dict"])
    model.load_other_parameter(state.get("other_parameter"))
    return {**record, **test_metrics(analyse(exp, run, model, data, train_data, test_data, cold)),
            "analysed": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def save(exp, run, record):
    """Write a finished run's record (atomically). Returns its path."""
    path = os.path.join(exp.runs_dir, run.file_name)
    os.makedirs(exp.runs_dir, exist_ok=True)
    atomic_write_text(path, lambda fh: json.dump(record, fh, indent=1))
    return path


def pending(exp):
    """The runs without a record yet."""
    return [r for r in exp.runs() if not os.path.exists(os.path.join(exp.runs_dir, r.file_name))]


def prepare(exp):
    """Check the models and dataset folders, and write the derived cold-start datasets (once,
    before any run uses them)."""
    from recbole_llm2rec.errors import InputError
    from recbole_llm2rec.evaluation import cold_start as cs
    from recbole_llm2rec.quick_start import resolve_model

    for model in exp.models:
        try:
            resolve_model(model)
        except ValueError as err:
            raise InputError(str(err), path=exp.path, field="models", value=model) from None
    for dataset in exp.datasets:
        if not os.path.isdir(os.path.join(exp.data_path, dataset)):
            raise InputError(f"no folder {dataset}/ in {exp.data_path}", path=exp.path,
                             field="datasets", value=dataset)
    if exp.cold_start:
        c = exp.cold_start
        for dataset in exp.datasets:
            cs.write_cold_start_dataset(exp.data_path, dataset, c["fraction"], c["seed"],
                                        out_path=c["data_path"])


def run_all(exp, parallel=1, address=None, on_done=None, command=""):
    """Run every pending run: in this process, or `parallel` at a time as Ray tasks of 1 CPU
    (on a cluster at `address` when given). `on_done(run, path)` follows each saved record.

    On Ray, the records are written here (the driver); the checkpoints and the data are read
    and written by the nodes at the paths resolved here, which must therefore be on storage
    every node shares. A run whose node or worker dies is retried (`RETRIES`; it resumes after
    its last validated epoch); one that still fails is reported and the others go on, then
    SystemExit names the failed runs. Bad input on a node (InputError) stops them all."""
    todo = pending(exp)
    if todo:
        prepare(exp)
    if parallel <= 1 and address is None:
        for run in todo:
            path = save(exp, run, train_and_evaluate(exp, run, command))
            if on_done:
                on_done(run, path)
        return len(todo)
    import ray
    from ray.exceptions import RayError, RayTaskError

    from recbole_llm2rec.errors import InputError

    ray.init(address=address, num_cpus=None if address else parallel, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {
                 "PYTHONPATH": os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]),
                 "OMP_NUM_THREADS": "1"}})
    failed = []
    try:
        task = ray.remote(num_cpus=1, max_retries=RETRIES)(_remote_run)
        waiting = {task.remote(exp, run, command): run for run in todo}
        while waiting:
            done, _ = ray.wait(list(waiting), num_returns=1)
            run = waiting.pop(done[0])
            try:
                record = ray.get(done[0])
            except RayTaskError as err:
                if isinstance(err.cause, InputError):
                    raise err.cause from None
                failed.append(run.file_name)
                print(f"failed {run.file_name}: {_first_line(err.cause or err)}", flush=True)
                continue
            except RayError as err:  # its node or worker died, more than RETRIES times
                failed.append(run.file_name)
                print(f"failed {run.file_name}: {_first_line(err)}", flush=True)
                continue
            path = save(exp, run, record)
            if on_done:
                on_done(run, path)
    finally:
        ray.shutdown()
    if failed:
        raise SystemExit(f"{len(failed)} of {len(todo)} runs failed ({', '.join(failed)}); "
                         f"run the same command again to retry them")
    return len(todo)


RETRIES = 2  # times Ray reruns a run whose node or worker died (not one that raised)


def _first_line(err):
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0] if text else ''}"


def _remote_run(exp, run, command):
    import torch

    from recbole_llm2rec.tune.nodes import check_on_node

    check_on_node(exp.data_path, *([exp.cold_start["data_path"]] if exp.cold_start else []))
    torch.set_num_threads(1)
    return train_and_evaluate(exp, run, command)
