"""The plugin's RecBole property files (`props/`): which files a run layers, and the defaults
they set. A default lives in `props/*.yaml` only; code reads it from the config (`setting`),
or, without a config, from here (`default`)."""
import os

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.yaml_file import read_yaml

PROPS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "props")
OVERALL = os.path.join(PROPS_DIR, "overall.yaml")


def props_files(model_class, dataset):
    """The plugin's yaml files for a run, in layering order (later files override earlier)."""
    if not os.path.isdir(PROPS_DIR):
        raise FileNotFoundError(f"props folder not found next to the package ({PROPS_DIR}); "
                                f"install the plugin with `pip install -e .` from its checkout")
    names = ["overall"] + [cls.__name__ for cls in reversed(model_class.__mro__)] + [dataset]
    paths = [os.path.join(PROPS_DIR, f"{name}.yaml") for name in names]
    return [p for p in paths if os.path.isfile(p)]


def default(key):
    """The value `props/overall.yaml` gives `key` (e.g. the default `text_emb`)."""
    values = read_yaml(OVERALL)
    if key not in values:
        raise KeyError(f"{key!r} is not set in {OVERALL}")
    return values[key]


def setting(config, key):
    """`config[key]`, whose default the props set; InputError when it is unset (a config built
    without the plugin's props: build it with `recbole_llm2rec.quick_start.build_config`)."""
    value = config[key]
    if value is None:
        raise InputError("not set; props/overall.yaml sets its default: build the config with "
                         "recbole_llm2rec.quick_start.build_config, or set it", field=key)
    return value
