"""Before Ray starts: check the space against the layered config, check the embedding files,
build the dataset cache once, and assemble what every trial receives."""
import os
import shutil
import tempfile

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.feat import dataset_feat_path, missing_feat
from recbole_llm2rec.tune import integrity
from recbole_llm2rec.tune.errors import TuneError
from recbole_llm2rec.tune.report import plain
from recbole_llm2rec.tune.space import space_max
from recbole_llm2rec.tune.trial import TRIAL_KEYS
from recbole_llm2rec.yaml_file import read_yaml, recbole_loader

def _config(search, overrides):
    from recbole_llm2rec.quick_start import build_config

    try:
        config, _ = build_config(search["model"], search["dataset"], search["config_files"],
                                 overrides=overrides)
    except InputError:
        raise
    except (ValueError, FileNotFoundError) as err:  # RecBole's and the runner's config checks
        raise TuneError(str(err)) from None
    return config


def check_space(space, config, search, overrides):
    """TuneError for a searched key that is fixed, unknown, or not searchable."""
    for key in space:
        where = {"path": search["space"], "field": key}
        if key in overrides:
            raise TuneError(f"searched here and fixed by --{key}={overrides[key]}", **where)
        if key not in config.final_config_dict:
            raise TuneError(f"not a config key of {search['model']} (not in any props file "
                            f"nor RecBole's defaults)", **where)
        if key in ("valid_metric", "valid_metric_bigger", "eval_step") or key in TRIAL_KEYS:
            raise TuneError("cannot be searched", **where)
    if not isinstance(config["eval_step"], int) or config["eval_step"] < 1:
        raise TuneError("must be a positive integer (ASHA needs validation results)",
                        field="eval_step", value=config["eval_step"])


def check_feats(space, config):
    """TuneError naming the first missing `<Dataset>.<text_emb>.feat` and the command that
    builds it."""
    names = space["text_emb"][1] if "text_emb" in space else [config["text_emb"]]
    for name in names:
        if not os.path.isfile(dataset_feat_path(config["data_path"], config["dataset"], name)):
            raise missing_feat(config["data_path"], config["dataset"], name, TuneError)


def build_dataset_cache(config, output):
    """RecBole's dataset cache in output/dataset_cache (built once, recorded in the manifest):
    trials load it instead of re-reading and re-filtering the atomic files. Returns its path."""
    from recbole.data import create_dataset

    cache_dir = os.path.join(output, integrity.CACHE_DIR)
    for name in sorted(os.listdir(cache_dir)) if os.path.isdir(cache_dir) else []:
        if name.endswith(".pth"):
            return os.path.join(cache_dir, name)
    os.makedirs(output, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".build-", dir=output)
    try:
        config["checkpoint_dir"], config["save_dataset"] = tmp, True
        dataset = create_dataset(config)
        name = f"{config['dataset']}-{type(dataset).__name__}.pth"
        os.makedirs(cache_dir, exist_ok=True)
        os.replace(os.path.join(tmp, name), os.path.join(cache_dir, name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    integrity.record(output, integrity.CACHE_DIR)
    return os.path.join(cache_dir, name)


def fixed_config(config_files, overrides):
    """What the user fixed beyond the props: extra config files, then overrides (typed)."""
    from recbole_llm2rec.quick_start import literal_values

    fixed = {}
    for path in config_files:
        fixed.update(read_yaml(path, TuneError, recbole_loader()))
    fixed.update(literal_values(overrides))
    return plain(fixed)


def prepare(search, output):
    """All checks that need no Ray, then the dataset cache. Returns the job every trial gets."""
    from recbole_llm2rec import MODELS

    space = search["space_parsed"]
    overrides = dict(search["overrides"])
    config_files = search["config_files"]
    config = _config(search, overrides)
    check_space(space, config, search, overrides)
    if search["model"] in MODELS:
        check_feats(space, config)

    # trials run in other processes (and nodes) with another working dir: absolute paths only
    data_root = os.path.dirname(os.path.abspath(config["data_path"]))
    overrides.pop("data_path", None)
    cache = build_dataset_cache(config, output)
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
        "fixed": fixed_config(config_files, search["overrides"]),
    }
