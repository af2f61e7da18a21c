"""The Ray Tune run: start or restore the search with ASHA, then write its results."""
import os

from recbole_llm2rec.tune import integrity
from recbole_llm2rec.tune.errors import TuneError
from recbole_llm2rec.tune.progress import ProgressBar
from recbole_llm2rec.tune.report import (best_config, trial_rows, write_best_config,
                                         write_results)
from recbole_llm2rec.tune.resources import trial_resources
from recbole_llm2rec.tune.space import to_tune_space
from recbole_llm2rec.tune.trial import run_trial, trial_dirname

CHECKOUT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_searcher(name, metric, mode, seed=None):
    """The Ray Tune search algorithm `name`; TuneError if unknown or its package is missing."""
    from ray.tune.search import SEARCH_ALG_IMPORT, BasicVariantGenerator, create_searcher

    if name in ("random", "variant_generator"):
        return BasicVariantGenerator(random_state=seed)
    if name not in SEARCH_ALG_IMPORT:
        raise TuneError(f"unknown; choose one of "
                        f"{', '.join(n for n in SEARCH_ALG_IMPORT if n != 'variant_generator')}",
                        field="--search-alg", value=name)
    try:
        # searchers name their seed differently; create_searcher drops the ones they lack
        return create_searcher(name, metric=metric, mode=mode, seed=seed, random_state=seed,
                               random_state_seed=seed)
    except (ImportError, AssertionError) as e:
        raise TuneError(f"its package is not installed ({e})", field="--search-alg",
                        value=name) from None


def _ray_callback(cls, *args):
    """An instance of `cls` that Ray Tune takes as a callback (Ray is imported only here)."""
    from ray.tune import Callback

    return type("Tune" + cls.__name__, (cls, Callback), {})(*args)


def search_and_report(args, search, job, output):
    """Start or restore the Ray Tune search, then write results.{csv,md} and best_config.yaml.
    Returns the results table."""
    import ray

    if args.address is None:
        # A local Ray on a machine starved of CPU (loaded, nice 19) misses its health checks
        # (3 s period, 10 s timeout, 5 misses) and declares its own node dead, which ends the
        # search; give it minutes instead. Environment values already set win.
        for key, value in (("health_check_period_ms", "10000"),
                           ("health_check_timeout_ms", "60000"),
                           ("health_check_failure_threshold", "30"),
                           ("gcs_rpc_server_reconnect_timeout_s", "1800")):
            os.environ.setdefault(f"RAY_{key}", value)
    # trials import the plugin even when it runs from a checkout rather than an installed package
    paths = [CHECKOUT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
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

    cpu, gpu = trial_resources(args.cpus, args.gpus, search["num_samples"])
    job["cpus"] = max(1, int(cpu))
    trainable = tune.with_resources(tune.with_parameters(run_trial, job=job),
                                    {"cpu": cpu, "gpu": gpu})
    metric, mode = job["metric"], job["mode"]
    exp_dir = os.path.join(output, integrity.RAY_DIR)
    if args.resume and tune.Tuner.can_restore(exp_dir):
        # the folder's files were checked against the manifest (folder.open_output)
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
                name=integrity.RAY_DIR, storage_path=output, verbose=0,
                failure_config=air.FailureConfig(max_failures=0, fail_fast=False),
                callbacks=[_ray_callback(ProgressBar, search["num_samples"], metric, mode),
                           _ray_callback(integrity.ManifestRecorder, output)]),
        )
    results = tuner.fit()
    space_keys = list(search["space_parsed"])
    table = trial_rows(results, space_keys, metric, mode)
    csv_path, md_path = write_results(table, output)
    config, best = best_config(table, space_keys, job["fixed"])
    print(f"{len(table)} trials; results: {md_path}")
    if config is None:
        raise SystemExit(f"no trial completed; see the error column of {md_path}")
    path = args.best_config or os.path.join(output, "best_config.yaml")
    write_best_config(path, search, config, best, metric, table)
    print(f"best {metric} = {best[metric]:.4f} ({best['trial']}); config: {path}")
    return table
