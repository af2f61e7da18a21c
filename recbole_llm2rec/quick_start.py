"""One RecBole run (config -> dataset -> model -> trainer -> fit -> test) for plugin and built-in models."""
import ast
import logging
import os
from logging import getLogger

import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, init_logger, init_seed

from recbole_llm2rec.atomic import leave_one_out_need
from recbole_llm2rec.compat import get_trainer, read_checkpoint
from recbole_llm2rec.distributed import check_launch, init_process_group, spawn
from recbole_llm2rec.errors import InputError
from recbole_llm2rec.inter_checks import check_dataset
from recbole_llm2rec.props import props_files
from recbole_llm2rec.yaml_file import read_yaml, recbole_loader
from recbole_llm2rec.evaluation.cold_start import items_to_hide
from recbole_llm2rec.model.hidden_items import hide_items, reveal_items

# RecBole always reads ml-100k from its own package; we read the copy that run_recbole.py
# converts into data_path (dataset_atomic.ml100k).
PACKAGED_DATASETS = ("ml-100k",)


# What a command-line value may become (RecBole's own list); anything else stays the text typed.
_LITERAL_TYPES = (str, int, float, list, tuple, dict, bool)


def literal_value(text):
    """A `--key=value` text as a Python literal (number, list, dict, bool, None), else the text.

    RecBole's converter runs `eval()` on it; this parses literals only, with RecBole's
    results for what it accepts: `1e-3` -> 0.001, `[10,20]` -> a list, `False`/`false` -> False,
    `{'split': {'LS': 'valid_and_test'}}` -> a dict, `minilm` or `[0,40)` -> the string.
    """
    try:
        value = ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return {"true": True, "false": False}.get(text.lower(), text)
    if value is not None and not isinstance(value, _LITERAL_TYPES):
        return text  # e.g. a set or a complex number: RecBole keeps the text too
    return value


def literal_values(values):
    """`values` with each string replaced by `literal_value` of it. Returns a new dict."""
    return {k: literal_value(v) if isinstance(v, str) else v for k, v in values.items()}


class PluginConfig(Config):
    """RecBole's Config, with command-line overrides passed in rather than read from sys.argv,
    and string values parsed as literals (`literal_value`) instead of RecBole's `eval()`.
    RecBole reads the atomic files of its datasets with quotes literal, after our reader has
    checked them (`compat._load_feat`)."""

    reads_atomic_files_literally = True

    def __init__(self, model, dataset, config_file_list=None, config_dict=None, overrides=None):
        self._overrides = dict(overrides or {})
        super().__init__(model=model, dataset=dataset, config_file_list=config_file_list,
                         config_dict=config_dict)

    def _load_cmd_line(self):
        return self._convert_config_dict(dict(self._overrides))

    def _init_device(self):
        if "local_rank" not in self.final_config_dict:  # one process
            return super()._init_device()
        gpu_id = self.final_config_dict["gpu_id"]
        self.final_config_dict["gpu_id"] = (",".join(map(str, gpu_id))
                                            if isinstance(gpu_id, tuple) else str(gpu_id))
        init_process_group(self.final_config_dict)  # RecBole's would need nccl and GPUs

    def _convert_config_dict(self, config_dict):
        # RecBole's version eval()s every string of config_dict and of the command line
        return literal_values(config_dict)


def parse_overrides(args):
    """RecBole-style `--key=value` command-line arguments. Returns {key: value string}; the
    config parses each value with `literal_value`."""
    overrides = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg or arg.startswith("--="):
            raise InputError(f"unrecognised argument {arg!r}; RecBole properties are given "
                             f"as --key=value")
        key, value = arg[2:].split("=", 1)
        overrides[key] = value
    return overrides


def resolve_model(name):
    """The model class for `name`: the plugin's models first, then RecBole's."""
    from recbole_llm2rec import MODELS

    if not isinstance(name, str):
        return name
    if name in MODELS:
        return MODELS[name]
    try:
        return get_model(name)
    except (ValueError, ImportError):  # RecBole's lookup also imports optional backends
        raise InputError(f"unknown model {name!r}: not one of the plugin's {sorted(MODELS)} "
                         f"nor a RecBole model") from None


def build_config(model, dataset, config_file_list=None, config_dict=None, overrides=None):
    """Layered config: props -> config files -> config_dict -> overrides. Returns (config, class).

    Reads no data: `check_data` checks the dataset folder, `run` calls it.
    """
    model_class = resolve_model(model)
    files = props_files(model_class, dataset) + [str(f) for f in config_file_list or []]
    for path in files:
        check_yaml_file(path)
    config = PluginConfig(model_class, dataset, files, config_dict, overrides)
    if dataset in PACKAGED_DATASETS:
        root = config.external_config_dict.get("data_path") or "dataset/"
        config["data_path"] = os.path.join(root, dataset)
    device = str(config.external_config_dict.get("device") or "")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("no CUDA GPU is visible to torch here; leave device unset (RecBole "
                         "then uses a GPU when there is one) or set device: cpu",
                         field="device", value=device)
    return config, model_class


def check_yaml_file(path):
    """Raise InputError naming the file and line unless `path` is a readable yaml mapping
    (read as RecBole reads it next)."""
    read_yaml(path, loader=recbole_loader())


def check_data(config):
    """Check the dataset's atomic files before RecBole reads them (`recbole_llm2rec.atomic`:
    the checks `python -m dataset_atomic atomic` and extraction make), then the model's own
    inputs when its class has `check_inputs(config, inter_paths, item_path)`. Raises
    InputError for bad input. Returns a list of warnings (strings) to log."""
    folder, dataset = config["data_path"], config["dataset"]
    if not os.path.isdir(folder):
        check_data_path(os.path.dirname(folder))
        hint = (f"convert it with: python -m dataset_atomic ml100k --out "
                f"{os.path.dirname(folder) or '.'}" if dataset in PACKAGED_DATASETS else
                f"put {dataset}.inter there or pass --data_path=<folder of datasets>")
        raise InputError(f"dataset folder not found; {hint}", folder)
    parts = config["benchmark_filename"] or [None]
    inters = [os.path.join(folder, ".".join(p for p in (dataset, part, "inter") if p))
              for part in parts]
    item_path = os.path.join(folder, f"{dataset}.item")
    item = item_path if os.path.isfile(item_path) else None
    need = 0 if config["benchmark_filename"] else leave_one_out_need(config["eval_args"])
    time = config["TIME_FIELD"] if (config["eval_args"] or {}).get("order") == "TO" else None
    filtered = config["val_interval"] or {}
    feedback = [f for f in (config["RATING_FIELD"], config["LABEL_FIELD"]) if f not in filtered]
    warnings = []
    for inter in inters:
        if not os.path.isfile(inter):
            raise InputError(f"no {os.path.basename(inter)} in the dataset folder", inter)
        warnings += check_dataset(inter, item, config["USER_ID_FIELD"], config["ITEM_ID_FIELD"],
                                  time, need, sep=config["field_separator"] or "\t",
                                  dedup=config["rm_dup_inter"], feedback=feedback)
    model_checks = getattr(config.model_class, "check_inputs", None)
    if model_checks is not None:  # a model's own needs (LLMSRec: titles, timestamps, LLM, teacher)
        model_checks(config, inters, item_path)
    return [str(w) for w in warnings]


def check_data_path(data_path):
    """Raise InputError when `data_path` (the folder of datasets) is, or is under, a file."""
    path = os.path.abspath(data_path)
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise InputError(f"{path} is a file, not a folder", field="data_path", value=data_path)


def start_logging(config, warnings=()):
    """RecBole's log file for this run with `warnings` and the config in it. Returns the logger."""
    # RecBole's init_logger (logging.basicConfig) keeps the handlers of an earlier run in this
    # process (tests, reused Ray workers): drop them so each run logs into its own file.
    for handler in getLogger().handlers[:]:
        getLogger().removeHandler(handler)
        handler.close()
    if config["single_spec"] or config["local_rank"] == 0:
        init_logger(config)
    else:  # one log file per run, rank 0's: the other ranks only print their errors
        logging.basicConfig(level=logging.ERROR, handlers=[logging.StreamHandler()])
    logger = getLogger()
    for warning in warnings:
        logger.warning(warning)
    logger.info(config)
    return logger


def run(model, dataset, config_file_list=None, config_dict=None, overrides=None, saved=True,
        callback_fn=None, resume_path=None, nproc=1, world_size=-1, ip="localhost", port=None,
        group_offset=0):
    """Train and test one model. `callback_fn(epoch_idx, valid_result)` runs after each validation.

    With `nproc` > 1 (or a `world_size`), RecBole's multi-process training: `nproc` processes
    here (ranks group_offset..group_offset + nproc - 1 of `world_size`, meeting at ip:port; the
    port is picked when the group is on this machine alone), gloo on CPUs, nccl on GPUs
    (`recbole_llm2rec.distributed`). It returns rank 0's `summary` of the run (no model or data;
    None on the other machines); `callback_fn` is not available.

    With `resume_path` (and `saved`), the trainer's state is written there after every
    validation (`save_resume_state`), training resumes from that file when it exists (a run
    killed earlier; it must have the same settings), and the file is removed once training
    has finished.

    On a cold-start dataset (`evaluation.cold_start`) under `cold_start_protocol: unseen`, the
    withheld items are hidden from the training loss and the validation ranking and revealed
    before the test.

    Returns a dict with best_valid_score, best_valid_result, test_result, valid_scores (every
    validation's score, resumed ones included), resumed_after (the epoch training resumed
    after, or None), model_file, test_users (internal ids of the tested users; full ranking
    only), the config, the trained model (best checkpoint loaded when saved) and the data
    (dataset, train, valid, test).
    """
    if nproc > 1 or world_size > 0:
        if callback_fn is not None:
            raise InputError("callback_fn is not available with nproc > 1 (it would run in "
                             "other processes)", field="nproc", value=nproc)
        config, _ = build_config(model, dataset, config_file_list, config_dict, overrides)
        check_data(config)  # bad input in one line here, not in every process
        return launch(dict(model=model, dataset=dataset, config_file_list=config_file_list,
                           config_dict=config_dict, overrides=overrides, saved=saved,
                           resume_path=resume_path),
                      config, nproc, world_size, ip, port, group_offset)
    config, model_class = build_config(model, dataset, config_file_list, config_dict, overrides)
    return run_config(config, model_class, check_data(config), saved, callback_fn, resume_path)


def launch(run_args, config, nproc, world_size=-1, ip="localhost", port=None, group_offset=0):
    """Start a multi-process run (`run`'s keyword arguments `run_args`) whose `config` is built
    and whose data is checked. Returns rank 0's `run_summary` (None on other machines)."""
    check_launch(config, nproc)
    return spawn(run_summary, run_args, nproc, world_size, ip, port, group_offset)


def run_config(config, model_class, warnings=(), saved=True, callback_fn=None, resume_path=None):
    """`run` with a config already built (`build_config`) and its data checked (`check_data`,
    whose `warnings` are logged). Returns what `run` returns."""
    init_seed(config["seed"], config["reproducibility"])
    logger = start_logging(config, warnings)

    data = create_dataset(config)
    logger.info(data)
    train_data, valid_data, test_data = data_preparation(config, data)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = model_class(config, train_data._dataset).to(config["device"])
    logger.info(net)
    hidden = items_to_hide(config, data)  # new items of a cold-start split: they exist at test
    if hidden is not None:
        hide_items(net, hidden)
        logger.info(f"{len(hidden)} withheld items hidden from training and validation")
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    resume_path = resume_path if saved else None
    resumed_after = None
    if resume_path and os.path.isfile(resume_path):
        resumed_after = trainer.resume(resume_path)

    def epoch_callback(epoch_idx, valid_score):
        if resume_path:
            trainer.save_resume_state(epoch_idx, resume_path)
        if callback_fn is not None:
            callback_fn(epoch_idx, trainer.last_valid_result)

    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"],
        callback_fn=epoch_callback)
    if resume_path and os.path.isfile(resume_path):
        os.remove(resume_path)
    reveal_items(net)  # the withheld items enter the catalogue now, as add_items would add them
    test_result = trainer.evaluate(test_data, load_best_model=saved,
                                   show_progress=config["show_progress"])
    logger.info(f"best valid: {dict(best_valid_result)}")
    logger.info(f"test result: {dict(test_result)}")
    return {
        "best_valid_score": best_valid_score,
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "valid_scores": list(trainer.valid_scores),
        "resumed_after": resumed_after,
        "valid_score_bigger": config["valid_metric_bigger"],
        "config": config,
        "model_file": trainer.saved_model_file if saved else None,
        "test_users": trainer.last_eval_users.tolist(),
        "model": net,
        "data": (data, train_data, valid_data, test_data),
    }


def run_summary(**kwargs):
    """`run(**kwargs)`'s result without the config, model and data: plain values, which one
    process can send to another."""
    result = run(**kwargs)
    return {k: v for k, v in result.items() if k not in ("config", "model", "data")}


# Loading a checkpoint must not unpickle anything: RecBole's dataset and dataloader caches
# (`dataset_save_path`, `dataloaders_save_path`) are pickles, so the data is rebuilt instead.
_NO_PICKLED_CACHES = {"save_dataset": False, "dataset_save_path": None,
                      "save_dataloaders": False, "dataloaders_save_path": None}


def load_data_and_model(model_file):
    """RecBole's `load_data_and_model` for checkpoints written by this plugin's trainers.

    Reads `model_file` with torch's safe loader, rebuilds the run's Config from the values it
    was given (recorded in the checkpoint), rebuilds the dataset and its split from the atomic
    files, and restores the model's weights. Works for the plugin's models and RecBole's.
    Returns (config, model, dataset, train_data, valid_data, test_data), like RecBole's.
    """
    checkpoint = read_checkpoint(model_file)
    recorded = checkpoint["config"]
    model_class = resolve_model(recorded["model"])
    config = PluginConfig(model_class, recorded["dataset"],
                          config_dict={**checkpoint["external_config"], **_NO_PICKLED_CACHES})
    config["data_path"] = recorded["data_path"]  # the folder the run read (ml-100k included)
    init_seed(config["seed"], config["reproducibility"])
    start_logging(config)

    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = model_class(config, train_data._dataset).to(config["device"])
    model.load_state_dict(checkpoint["state_dict"])
    model.load_other_parameter(checkpoint.get("other_parameter"))
    return config, model, dataset, train_data, valid_data, test_data
