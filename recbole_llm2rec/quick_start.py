"""One RecBole run (config -> dataset -> model -> trainer -> fit -> test) for plugin and built-in models."""
import os
from logging import getLogger

from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.utils import get_model, init_logger, init_seed

from recbole_llm2rec.compat import get_trainer

PROPS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "props")
# RecBole always reads ml-100k from its own package; we use a converted copy in data_path.
PACKAGED_DATASETS = ("ml-100k",)


class PluginConfig(Config):
    """RecBole's Config, with command-line overrides passed in rather than read from sys.argv."""

    def __init__(self, model, dataset, config_file_list=None, config_dict=None, overrides=None):
        self._overrides = dict(overrides or {})
        super().__init__(model=model, dataset=dataset, config_file_list=config_file_list,
                         config_dict=config_dict)

    def _load_cmd_line(self):
        return self._convert_config_dict(dict(self._overrides))


def parse_overrides(args):
    """RecBole-style `--key=value` command-line arguments. Returns {key: value string}."""
    overrides = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg or arg.startswith("--="):
            raise ValueError(f"unrecognised argument {arg!r}; RecBole properties are given "
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
        raise ValueError(f"unknown model {name!r}: not one of the plugin's {sorted(MODELS)} "
                         f"nor a RecBole model") from None


def props_files(model_class, dataset):
    """The plugin's yaml files for a run, in layering order (later files override earlier)."""
    if not os.path.isdir(PROPS_DIR):
        raise FileNotFoundError(f"props folder not found next to the package ({PROPS_DIR}); "
                                f"install the plugin with `pip install -e .` from its checkout")
    names = ["overall"] + [cls.__name__ for cls in reversed(model_class.__mro__)] + [dataset]
    paths = [os.path.join(PROPS_DIR, f"{name}.yaml") for name in names]
    return [p for p in paths if os.path.isfile(p)]


def build_config(model, dataset, config_file_list=None, config_dict=None, overrides=None):
    """Layered config: props -> config files -> config_dict -> overrides. Returns (config, class)."""
    model_class = resolve_model(model)
    files = props_files(model_class, dataset) + [str(f) for f in config_file_list or []]
    for path in files:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"config file not found: {path}")
    config = PluginConfig(model_class, dataset, files, config_dict, overrides)
    if dataset in PACKAGED_DATASETS:
        from dataset_atomic import ml100k

        root = config.external_config_dict.get("data_path") or "dataset/"
        config["data_path"] = ml100k.convert(root)
    elif not os.path.isdir(config["data_path"]):
        raise FileNotFoundError(f"dataset folder {config['data_path']} not found: put "
                                f"{dataset}.inter there or pass --data_path=<folder of datasets>")
    return config, model_class


def run(model, dataset, config_file_list=None, config_dict=None, overrides=None, saved=True,
        callback_fn=None):
    """Train and test one model. `callback_fn(epoch_idx, valid_result)` runs after each validation.

    Returns a dict with best_valid_score, best_valid_result, test_result, the config, the
    trained model (best checkpoint loaded when saved) and the data (dataset, train, valid, test).
    """
    config, model_class = build_config(model, dataset, config_file_list, config_dict, overrides)
    init_seed(config["seed"], config["reproducibility"])
    # RecBole's init_logger (logging.basicConfig) keeps the handlers of an earlier run in this
    # process (tests, reused Ray workers): drop them so each run logs into its own file.
    for handler in getLogger().handlers[:]:
        getLogger().removeHandler(handler)
        handler.close()
    init_logger(config)
    logger = getLogger()
    logger.info(config)

    data = create_dataset(config)
    logger.info(data)
    train_data, valid_data, test_data = data_preparation(config, data)

    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    net = model_class(config, train_data._dataset).to(config["device"])
    logger.info(net)
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, net)
    epoch_callback = None
    if callback_fn is not None:
        def epoch_callback(epoch_idx, valid_score):
            callback_fn(epoch_idx, trainer.last_valid_result)

    best_valid_score, best_valid_result = trainer.fit(
        train_data, valid_data, saved=saved, show_progress=config["show_progress"],
        callback_fn=epoch_callback)
    test_result = trainer.evaluate(test_data, load_best_model=saved,
                                   show_progress=config["show_progress"])
    logger.info(f"best valid: {dict(best_valid_result)}")
    logger.info(f"test result: {dict(test_result)}")
    return {
        "best_valid_score": best_valid_score,
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "valid_score_bigger": config["valid_metric_bigger"],
        "config": config,
        "model_file": trainer.saved_model_file if saved else None,
        "model": net,
        "data": (data, train_data, valid_data, test_data),
    }
