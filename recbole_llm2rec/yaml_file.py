"""Reading a yaml settings file (props, `--config_files`, pipeline configs, search spaces,
benchmark configs): one reader, whose errors name the file and line."""
import os

import yaml

from recbole_llm2rec.errors import InputError


def recbole_loader():
    """RecBole's yaml loader (reads `1e-4` as a float, as props files do)."""
    from recbole.config import Config

    return Config._build_yaml_loader(None)


def read_yaml(path, error=InputError, loader=yaml.SafeLoader, what="`key: value` settings",
              lines=False, kind="config file"):
    """The yaml mapping in the file at `path` ({} when empty), read with `loader`; with `lines`,
    also {top-level key: its 1-based line}. Raises `error` (an InputError class) naming the
    file (and line) when it (a `kind`) is missing, not UTF-8, not yaml, or not a mapping of
    `what`."""
    if not os.path.isfile(path):
        raise error(f"{kind} not found", path=path)
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise error(f"not UTF-8 text (byte {raw[err.start]:#04x})", path=path,
                    line=raw[:err.start].count(b"\n") + 1) from None
    try:
        data = yaml.load(text, Loader=loader)
        node = yaml.compose(text, Loader=loader) if lines else None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise error(f"not valid yaml: {problem}", path=path,
                    line=mark.line + 1 if mark else None) from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise error(f"expected a mapping of {what}, got a {type(data).__name__}", path=path)
    if not lines:
        return data
    keys = node.value if isinstance(node, yaml.MappingNode) else []
    return data, {key.value: key.start_mark.line + 1 for key, _ in keys}
