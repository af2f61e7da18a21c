"""Ray Tune hyper-parameter search over RecBole runs of any model the runner supports.

    python -m recbole_llm2rec.tune --model TextSASRec --dataset Games \
        --space props/tune/TextSASRec.yaml --num-samples 8 --epochs=5

Each trial is one `quick_start.run` with the sampled values layered over the usual props
(props -> --config_files -> sampled values -> `--key=value` overrides). ASHA stops trials early
on the validation metric (RecBole's `valid_metric`); test metrics are only recorded.
Writes into --output: `results.csv`, `results.md`, `best_config.yaml`, Ray's experiment
folder `ray/` (resumable with --resume) and `dataset_cache/` (the dataset, built once).
"""
import argparse
import json
import math
import os
import shutil
import sys
import tempfile

import pandas as pd
import yaml
from tqdm import tqdm

from recbole_llm2rec.feat import atomic_write_text

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
# Keys the tuner sets for every trial: where it saves, which GPU Ray gave it, the dataset cache.
TRIAL_KEYS = ("checkpoint_dir", "gpu_id", "save_dataset", "dataset_save_path")
SEARCH_FILE = "search.json"


class TuneError(ValueError):
    """A search space, option or search folder is invalid."""


def _yaml_loader():
    """RecBole's yaml loader (reads `1e-4` as a float, as props files do)."""
    from recbole.config import Config

    return Config._build_yaml_loader(None)


def _number(where, value, integer=False):
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise TuneError(f"{where}: bound {value!r} is not {kind}")
    return value


def _check_distribution(where, dist, args):
    """Validated arguments of one distribution; TuneError names the key and the value."""
    if dist == "choice":
        if not isinstance(args, list) or not args:
            raise TuneError(f"{where}: choice needs a non-empty list of values, got {args!r}")
        return args
    if not isinstance(args, list) or len(args) != 2:
        raise TuneError(f"{where}: {dist} needs [low, high], got {args!r}")
    low, high = (_number(where, v, integer=dist == "randint") for v in args)
    if dist == "randint" and low > high:
        raise TuneError(f"{where}: randint needs low <= high, got [{low}, {high}]")
    if dist != "randint" and not low < high:
        raise TuneError(f"{where}: {dist} needs low < high, got [{low}, {high}]")
    if dist == "loguniform" and low <= 0:
        raise TuneError(f"{where}: loguniform needs 0 < low, got [{low}, {high}]")
    return [low, high]


def load_space(path):
    """Read a search-space yaml. Returns {config key: (distribution, args)}."""
    if not os.path.isfile(path):
        raise TuneError(f"{path}: search-space file not found")
    with open(path, encoding="utf-8") as fh:
        try:
            data = yaml.load(fh, Loader=_yaml_loader())
        except yaml.YAMLError as e:
            raise TuneError(f"{path}: not valid yaml ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict) or not data:
        raise TuneError(f"{path}: expected a mapping of config keys to distributions, "
                        f"e.g. 'learning_rate: {{loguniform: [1.0e-4, 1.0e-2]}}'")
    space = {}
    for key, value in data.items():
        where = f"{path}: {key}"
        if not isinstance(value, dict) or len(value) != 1:
            raise TuneError(f"{where}: expected one distribution such as {{choice: [a, b]}}, "
                            f"got {value!r}")
        (dist, args), = value.items()
        if dist not in DISTRIBUTIONS:
            raise TuneError(f"{where}: unknown distribution {dist!r} "
                            f"(expected one of {', '.join(DISTRIBUTIONS)})")
        space[str(key)] = (dist, _check_distribution(where, dist, args))
    return space


def to_tune_space(space):
    """Ray Tune domains for a parsed space; randint includes its upper bound."""
    from ray import tune

    make = {
        "choice": lambda a: tune.choice(a),
        "uniform": lambda a: tune.uniform(*a),
        "loguniform": lambda a: tune.loguniform(*a),
        "randint": lambda a: tune.randint(a[0], a[1] + 1),
    }
    return {key: make[dist](args) for key, (dist, args) in space.items()}


def space_max(space, key, default):
    """Largest value `key` can take in the space (its fixed value when not searched)."""
    if key not in space:
        return default
    dist, args = space[key]
    return max(args) if dist == "choice" else args[1]


def parse_overrides(args):
    """RecBole-style `--key=value` arguments, minus the keys the tuner sets. Returns {key: str}."""
    from recbole_llm2rec.quick_start import parse_overrides as parse_key_values

    overrides = parse_key_values(args)
    for key in overrides:
        if key in TRIAL_KEYS:
            raise TuneError(f"--{key} is set by the tuner for each trial; leave it out")
    return overrides


def _plain(value):
    """Numpy scalars and tuples as plain Python values (for yaml and json)."""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------------------------------------------
# One trial (runs in a Ray worker process, possibly on another node)


def run_trial(params, job):
    """Ray Tune function trainable: one RecBole run; reports valid metrics after each evaluation."""
    import ray
    import torch
    from ray.air import session

    from recbole_llm2rec.quick_start import run

    torch.set_num_threads(job["cpus"])
    config_dict = dict(job["config_dict"])
    config_dict.update(params)
    config_dict.update(
        checkpoint_dir=os.path.join(session.get_trial_dir(), "checkpoints"),
        # RecBole writes gpu_id into CUDA_VISIBLE_DEVICES: keep the GPUs Ray gave this trial
        gpu_id=",".join(str(g) for g in ray.get_gpu_ids()),
        save_dataset=False,
        dataset_save_path=job["dataset_cache"],
    )

    epochs, eval_step = params.get("epochs", job["epochs"]), job["eval_step"]
    last_epoch = [0]

    def report_valid(epoch_idx, valid_result):
        last_epoch[0] = epoch_idx + 1
        # The last evaluation is reported with the test metrics, so that ASHA cannot stop a
        # trial that has nothing left to train before its test result is known.
        if epoch_idx + 1 + eval_step <= epochs:
            metrics = {f"valid/{k}": float(v) for k, v in valid_result.items()}
            session.report({**metrics, "epoch": epoch_idx + 1})

    result = run(job["model"], job["dataset"], job["config_files"], config_dict=config_dict,
                 overrides=job["overrides"], saved=True, callback_fn=report_valid)
    final = {f"valid/{k}": float(v) for k, v in result["best_valid_result"].items()}
    final.update({f"test/{k}": float(v) for k, v in result["test_result"].items()})
    session.report({**final, "epoch": last_epoch[0]})
    # Returning nothing: in Ray 2.6 a returned dict is one more result, which ASHA rejects.


def trial_dirname(trial):
    """Short trial folder names (Ray's default spells out every parameter)."""
    return f"trial_{trial.trial_id}"


class ProgressBar:
    """Ray Tune callback: a tqdm bar of finished trials, with the best validation score so far."""

    def __init__(self, total, metric, mode):
        self.total, self.metric, self.mode = total, metric, mode
        self.bar, self.best = None, None

    def __getstate__(self):
        # Ray pickles its run config for Tuner.restore; the bar itself is not picklable
        return {"total": self.total, "metric": self.metric, "mode": self.mode}

    def __setstate__(self, state):
        self.__init__(**state)

    def _tick(self, trial):
        if self.bar is None:
            self.bar = tqdm(total=self.total, desc="trials", unit="trial")
        score = (trial.last_result or {}).get(self.metric)
        if score is not None and (self.best is None or (score > self.best) == (self.mode == "max")):
            self.best = score
        if self.best is not None:
            self.bar.set_postfix({self.metric: f"{self.best:.4f}"})
        self.bar.update(1)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._tick(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._tick(trial)


def _callback(total, metric, mode):
    from ray.tune import Callback

    return type("TuneProgressBar", (ProgressBar, Callback), {})(total, metric, mode)


# ---------------------------------------------------------------------------------------------
# Results


def trial_rows(results, space_keys, metric, mode):
    """One row per trial: parameters, best validation and final test metrics, status, error."""
    rows = []
    for res in results:
        metrics = res.metrics or {}
        row = {"trial": os.path.basename(res.path.rstrip("/"))}
        row.update({k: _plain((res.config or {}).get(k)) for k in space_keys})
        history = res.metrics_dataframe
        # only a trial that ran to its end reports test metrics
        completed = any(str(k).startswith("test/") for k in metrics)
        if res.error is not None:
            row["status"] = "error"
        else:
            row["status"] = "completed" if completed else "stopped"
        evals = pd.DataFrame()
        if history is not None and "epoch" in history:
            evals = history[history["epoch"].notna()]
        row["epochs"] = int(evals["epoch"].max()) if len(evals) else 0
        if completed:
            best = metrics
        elif len(evals) and metric in evals:
            best = evals.loc[evals[metric].idxmax() if mode == "max" else evals[metric].idxmin()]
        else:
            best = {}
        row.update({k: float(best[k]) for k in best.keys()
                    if str(k).startswith(("valid/", "test/"))})
        row["time_s"] = round(float(metrics.get("time_total_s", float("nan"))), 1)
        row["error"] = _one_line(res.error) if res.error is not None else ""
        rows.append(row)
    table = pd.DataFrame(rows)
    if metric not in table:
        table[metric] = float("nan")
    front = ["trial", "status", *space_keys, "epochs", metric]
    valid = sorted(c for c in table.columns if c.startswith("valid/") and c not in front)
    test = sorted(c for c in table.columns if c.startswith("test/"))
    table = table[front + valid + test + ["time_s", "error"]]
    table = table.sort_values(metric, ascending=mode == "min", na_position="last", kind="stable")
    return table.reset_index(drop=True)


def _one_line(error):
    """The last non-empty line of an error's text, shortened (full trace: the trial folder)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[-1] if lines else type(error).__name__
    return text[:160]


def _cell(column, value):
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        if column.startswith(("valid/", "test/")):
            return f"{value:.4f}"
        return f"{value:.1f}" if column == "time_s" else f"{value:.4g}"
    return str(value).replace("|", "\\|")


def markdown_table(table):
    """The results table as GitHub Markdown: metrics to 4 decimals, parameters to 4 digits."""
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    for row in table.itertuples(index=False):
        lines.append("| " + " | ".join(_cell(c, v) for c, v in zip(table.columns, row)) + " |")
    return "\n".join(lines) + "\n"


def write_results(table, out_dir):
    """Write `results.csv` and `results.md` atomically. Returns their paths."""
    csv_path, md_path = os.path.join(out_dir, "results.csv"), os.path.join(out_dir, "results.md")
    atomic_write_text(csv_path, lambda fh: table.to_csv(fh, index=False))
    atomic_write_text(md_path, lambda fh: fh.write(markdown_table(table)))
    return csv_path, md_path


def best_config(table, space_keys, fixed):
    """The best completed trial (table is sorted) as a RecBole config: `fixed` plus its parameters.

    Returns (config dict, its table row), or (None, None) when no trial completed.
    """
    done = table[table["status"] == "completed"]
    if done.empty:
        return None, None
    best = done.iloc[0]
    config = dict(fixed)
    config.update({k: _plain(best[k]) for k in space_keys})
    return config, best


def write_best_config(path, search, config, best, metric, num_trials):
    """Write `config` as a yaml for `run_recbole.py --config_files=...`, with a why-header."""
    test = metric.replace("valid/", "test/")
    header = [
        f"# Best of {num_trials} trials of {search['model']} on {search['dataset']} "
        f"({best['trial']}): {metric} = {best[metric]:.4f}"
        + (f", {test} = {best[test]:.4f}" if test in best else ""),
        f"# python run_recbole.py --model={search['model']} --dataset={search['dataset']} "
        f"--config_files={os.path.basename(path)}",
    ]

    def write(fh):
        fh.write("\n".join(header) + "\n")
        yaml.safe_dump(_plain(config), fh, default_flow_style=False, sort_keys=False)

    atomic_write_text(path, write)


# ---------------------------------------------------------------------------------------------
# Driver


def build_parser():
    p = argparse.ArgumentParser(prog="python -m recbole_llm2rec.tune",
                                description=__doc__.split("\n")[0],
                                epilog="Any other --key=value is a RecBole property override.")
    p.add_argument("--model", help="model name: TextSASRec, TextGRU4Rec or a RecBole model")
    p.add_argument("--dataset", help="dataset name (a folder in data_path)")
    p.add_argument("--space", help="search-space yaml, e.g. props/tune/TextSASRec.yaml")
    p.add_argument("--config_files", default="", help="space-separated extra RecBole yaml files")
    p.add_argument("--num-samples", type=int, default=8, help="number of trials (default 8)")
    p.add_argument("--cpus", type=float, default=None,
                   help="CPUs per trial (default: the cluster's CPUs split over the trials)")
    p.add_argument("--gpus", type=float, default=None,
                   help="GPUs per trial (default: 1 when the cluster has GPUs, else 0)")
    p.add_argument("--address", default=None,
                   help="join a running Ray cluster: 'auto' or 'ray://host:10001' "
                        "(default: start Ray on this machine)")
    p.add_argument("--search-alg", default="random",
                   help="random (default) or a Ray Tune searcher name: optuna, hyperopt, ...")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the search algorithm, for a reproducible search (default: none)")
    p.add_argument("--grace-period", type=int, default=1,
                   help="ASHA: evaluations every trial gets before it can be stopped (default 1)")
    p.add_argument("--reduction-factor", type=int, default=2,
                   help="ASHA: keep 1 of this many trials at each rung (default 2)")
    p.add_argument("--output", default=None,
                   help="search folder (default: saved/tune/<model>-<dataset>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted search in --output")
    return p


def make_searcher(name, metric, mode, seed=None):
    """The Ray Tune search algorithm `name`; TuneError if unknown or its package is missing."""
    from ray.tune.search import SEARCH_ALG_IMPORT, BasicVariantGenerator, create_searcher

    if name in ("random", "variant_generator"):
        return BasicVariantGenerator(random_state=seed)
    if name not in SEARCH_ALG_IMPORT:
        raise TuneError(f"--search-alg {name!r} is unknown; choose one of "
                        f"{', '.join(n for n in SEARCH_ALG_IMPORT if n != 'variant_generator')}")
    try:
        # searchers name their seed differently; create_searcher drops the ones they lack
        return create_searcher(name, metric=metric, mode=mode, seed=seed, random_state=seed,
                               random_state_seed=seed)
    except (ImportError, AssertionError) as e:
        raise TuneError(f"--search-alg {name}: its package is not installed ({e})") from None


def _search_settings(args, overrides):
    """The settings that define a search (saved in the folder, compared on --resume)."""
    return {
        "model": args.model,
        "dataset": args.dataset,
        "space": os.path.abspath(args.space),
        "config_files": [os.path.abspath(f) for f in args.config_files.split()],
        "overrides": overrides,
        "num_samples": args.num_samples,
        "search_alg": args.search_alg,
        "seed": args.seed,
        "grace_period": args.grace_period,
        "reduction_factor": args.reduction_factor,
    }


def _open_output(args, overrides):
    """Create or reopen the search folder. Returns (output folder, search settings)."""
    if args.output is None:
        if not (args.model and args.dataset):
            raise TuneError("give --output, or --model and --dataset")
        args.output = os.path.join("saved", "tune", f"{args.model}-{args.dataset}")
    output = os.path.abspath(args.output)
    saved_path = os.path.join(output, SEARCH_FILE)
    if args.resume:
        if not os.path.isfile(saved_path):
            raise TuneError(f"--resume: {output} holds no search ({SEARCH_FILE} missing)")
        with open(saved_path, encoding="utf-8") as fh:
            search = json.load(fh)
        given = {k: v for k, v in vars(args).items() if v is not None}
        for key in ("model", "dataset"):
            if key in given and given[key] != search[key]:
                raise TuneError(f"--resume: --{key} {given[key]!r} differs from the search in "
                                f"{output} ({search[key]!r}); leave it out")
        return output, search
    for key in ("model", "dataset", "space"):
        if not getattr(args, key):
            raise TuneError(f"--{key} is required (unless --resume)")
    if args.num_samples < 1:
        raise TuneError(f"--num-samples must be >= 1, got {args.num_samples}")
    if os.path.exists(output) and os.listdir(output):
        raise TuneError(f"{output} already holds a search; pass --resume to continue it or "
                        f"choose another --output")
    search = _search_settings(args, overrides)
    return output, search


def prepare(search, output):
    """Check the space against the layered config and build the dataset cache, before Ray starts.

    Returns the job dict every trial receives.
    """
    from recbole.data import create_dataset

    from recbole_llm2rec import MODELS
    from recbole_llm2rec.quick_start import build_config

    space = search["space_parsed"]
    overrides = dict(search["overrides"])
    config_files = search["config_files"]
    config, _ = build_config(search["model"], search["dataset"], config_files,
                             overrides=overrides)
    for key in space:
        if key in overrides:
            raise TuneError(f"{key} is both searched ({search['space']}) and fixed by --{key}")
        if key not in config.final_config_dict:
            raise TuneError(f"{search['space']}: {key!r} is not a config key of "
                            f"{search['model']} (not in any props file nor RecBole's defaults)")
        if key in ("valid_metric", "valid_metric_bigger", "eval_step") or key in TRIAL_KEYS:
            raise TuneError(f"{search['space']}: {key!r} cannot be searched")
    if not isinstance(config["eval_step"], int) or config["eval_step"] < 1:
        raise TuneError(f"eval_step must be a positive integer (ASHA needs validation results), "
                        f"got {config['eval_step']!r}")
    if search["model"] in MODELS:
        from pretrain.extract import ensure_feat

        for name in space["text_emb"][1] if "text_emb" in space else [config["text_emb"]]:
            ensure_feat(config["data_path"], config["dataset"], name)

    # trials run in other processes (and nodes) with another working dir: absolute paths only
    data_root = os.path.dirname(os.path.abspath(config["data_path"]))
    overrides.pop("data_path", None)
    cache_dir = os.path.join(output, "dataset_cache")
    cache = None
    for name in os.listdir(cache_dir) if os.path.isdir(cache_dir) else []:
        if name.endswith(".pth"):
            cache = os.path.join(cache_dir, name)
    if cache is None:
        # RecBole's own dataset cache: trials load it instead of re-reading and re-filtering
        os.makedirs(output, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".build-", dir=output)
        try:
            config["checkpoint_dir"], config["save_dataset"] = tmp, True
            dataset = create_dataset(config)
            name = f"{config['dataset']}-{type(dataset).__name__}.pth"
            os.makedirs(cache_dir, exist_ok=True)
            cache = os.path.join(cache_dir, name)
            os.replace(os.path.join(tmp, name), cache)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    metric = "valid/" + config["valid_metric"].lower()
    evaluations = max(1, space_max(space, "epochs", config["epochs"]) // config["eval_step"])
    return {
        "model": search["model"],
        "dataset": search["dataset"],
        "config_files": config_files,
        "overrides": overrides,
        "config_dict": {"data_path": data_root, "show_progress": False},
        "dataset_cache": cache,
        "metric": metric,
        "mode": "max" if config["valid_metric_bigger"] else "min",
        "max_evaluations": evaluations,
        "epochs": config["epochs"],
        "eval_step": config["eval_step"],
        "fixed": _fixed_config(config, config_files, search["overrides"]),
    }


def _fixed_config(config, config_files, overrides):
    """What the user fixed beyond the props: extra config files, then overrides (typed)."""
    fixed = {}
    for path in config_files:
        with open(path, encoding="utf-8") as fh:
            fixed.update(yaml.load(fh, Loader=_yaml_loader()) or {})
    fixed.update(config._convert_config_dict(dict(overrides)))
    return _plain(fixed)


def _resources(args, num_samples):
    """CPUs and GPUs per trial: given, or the cluster's split over the trials."""
    import ray

    total = ray.cluster_resources()
    cpus, gpus = total.get("CPU", 1), total.get("GPU", 0)
    per_gpu = 1 if gpus >= 1 else 0
    gpu = per_gpu if args.gpus is None else args.gpus
    if args.cpus is not None:
        cpu = args.cpus
    elif gpu:
        cpu = max(1, int(cpus // max(1, gpus / gpu)))
    else:
        cpu = max(1, int(cpus // min(num_samples, cpus)))
    if cpu > cpus or gpu > gpus:
        raise TuneError(f"a trial asks for {cpu} CPUs and {gpu} GPUs, but the cluster has "
                        f"{cpus:g} CPUs and {gpus:g} GPUs")
    return cpu, gpu


def main(argv=None):
    """Run (or resume) a search; writes the results table and best config. Returns the table."""
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    try:
        overrides = parse_overrides(rest)
        output, search = _open_output(args, overrides)
        space_file = os.path.join(output, "space.yaml") if args.resume else search["space"]
        if args.resume and (rest or args.space or args.config_files):
            print("--resume: using the settings saved in the search folder", file=sys.stderr)
        search["space_parsed"] = load_space(space_file)
        make_searcher(search["search_alg"], None, None)
        job = prepare(search, output)
        if not args.resume:
            shutil.copyfile(search["space"], os.path.join(output, "space.yaml"))
            saved = {k: v for k, v in search.items() if k != "space_parsed"}
            atomic_write_text(os.path.join(output, SEARCH_FILE),
                              lambda fh: json.dump(saved, fh, indent=2))
    except (ValueError, FileNotFoundError) as e:  # TuneError, FeatError, RecBole's config checks
        parser.exit(2, f"error: {e}\n")
    try:
        return search_and_report(args, search, job, output)
    except TuneError as e:
        parser.exit(2, f"error: {e}\n")


def search_and_report(args, search, job, output):
    """Start or restore the Ray Tune search, then write results.{csv,md} and best_config.yaml."""
    import ray

    # trials import the plugin even when it runs from a checkout rather than an installed package
    checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = [checkout] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False,
             ignore_reinit_error=True,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(paths)}})
    try:
        return _fit_and_report(args, search, job, output)
    finally:
        ray.shutdown()  # on a cluster this only disconnects


def _fit_and_report(args, search, job, output):
    from ray import air, tune
    from ray.tune.schedulers import ASHAScheduler

    cpu, gpu = _resources(args, search["num_samples"])
    job["cpus"] = max(1, int(cpu))
    trainable = tune.with_resources(tune.with_parameters(run_trial, job=job),
                                    {"cpu": cpu, "gpu": gpu})
    metric, mode = job["metric"], job["mode"]
    exp_dir = os.path.join(output, "ray")
    if args.resume and tune.Tuner.can_restore(exp_dir):
        tuner = tune.Tuner.restore(exp_dir, trainable=trainable, resume_unfinished=True)
    else:
        scheduler = ASHAScheduler(
            time_attr="training_iteration",  # one result per evaluation
            max_t=job["max_evaluations"],
            grace_period=search["grace_period"], reduction_factor=search["reduction_factor"])
        tuner = tune.Tuner(
            trainable,
            param_space=to_tune_space(search["space_parsed"]),
            tune_config=tune.TuneConfig(
                metric=metric, mode=mode, scheduler=scheduler, num_samples=search["num_samples"],
                search_alg=make_searcher(search["search_alg"], metric, mode, search["seed"]),
                trial_dirname_creator=trial_dirname),
            run_config=air.RunConfig(
                name="ray", storage_path=output, verbose=0,
                failure_config=air.FailureConfig(max_failures=0, fail_fast=False),
                callbacks=[_callback(search["num_samples"], metric, mode)]),
        )
    results = tuner.fit()
    space_keys = list(search["space_parsed"])
    table = trial_rows(results, space_keys, metric, mode)
    csv_path, md_path = write_results(table, output)
    config, best = best_config(table, space_keys, job["fixed"])
    print(f"{len(table)} trials; results: {md_path}")
    if config is None:
        raise SystemExit(f"no trial completed; see the error column of {md_path}")
    path = os.path.join(output, "best_config.yaml")
    write_best_config(path, search, config, best, metric, len(table))
    print(f"best {metric} = {best[metric]:.4f} ({best['trial']}); config: {path}")
    return table


if __name__ == "__main__":
    main(sys.argv[1:])
