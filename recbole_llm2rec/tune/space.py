"""Search spaces: read and check a space yaml, turn it into Ray Tune domains."""
from recbole_llm2rec.tune.errors import TuneError
from recbole_llm2rec.yaml_file import read_yaml, recbole_loader

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
SPACE_EXAMPLE = ("config keys to distributions, e.g. "
                 "'learning_rate: {loguniform: [1.0e-4, 1.0e-2]}'")


def _number(where, value, integer=False):
    kinds = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        kind = "an integer" if integer else "a number"
        raise TuneError(f"bound {value!r} is not {kind}", **where)
    return value


def _check_distribution(where, dist, args):
    """Validated arguments of one distribution; TuneError names the file, line, key and value."""
    if dist == "choice":
        if not isinstance(args, list) or not args:
            raise TuneError(f"choice needs a non-empty list of values, got {args!r}", **where)
        return args
    if not isinstance(args, list) or len(args) != 2:
        raise TuneError(f"{dist} needs [low, high], got {args!r}", **where)
    low, high = (_number(where, v, integer=dist == "randint") for v in args)
    if dist == "randint" and low > high:
        raise TuneError(f"randint needs low <= high, got [{low}, {high}]", **where)
    if dist != "randint" and not low < high:
        raise TuneError(f"{dist} needs low < high, got [{low}, {high}]", **where)
    if dist == "loguniform" and low <= 0:
        raise TuneError(f"loguniform needs 0 < low, got [{low}, {high}]", **where)
    return [low, high]


def load_space(path):
    """Read a search-space yaml. Returns {config key: (distribution, args)}."""
    data, lines = read_yaml(path, TuneError, recbole_loader(), lines=True, kind="search-space file",
                            what=SPACE_EXAMPLE)
    if not data:
        raise TuneError(f"expected a mapping of {SPACE_EXAMPLE}", path=path)
    space = {}
    for key, value in data.items():
        where = {"path": path, "line": lines.get(str(key)), "field": str(key), "value": value}
        if not isinstance(value, dict) or len(value) != 1:
            raise TuneError("expected one distribution such as {choice: [a, b]}", **where)
        (dist, args), = value.items()
        if dist not in DISTRIBUTIONS:
            raise TuneError(f"unknown distribution {dist!r} "
                            f"(expected one of {', '.join(DISTRIBUTIONS)})", **where)
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
