"""A fair-tuning config (yaml) and the `python -m recbole_llm2rec.tune` search of each variant.

Every search gets the same space, trial count, search seed, ASHA settings, CPUs and RecBole
settings; a variant adds only its model and its own fixed settings (e.g. `item_repr: text+id`).
"""
import dataclasses
import os

from recbole_llm2rec.errors import InputError
from recbole_llm2rec.yaml_file import read_yaml

KEYS = {"name", "data_path", "datasets", "space", "num_samples", "search_seed", "grace_period",
        "reduction_factor", "cpus", "recbole", "variants"}
OPTIONAL = {"results_dir": os.path.join("benchmarks", "results"),
            "tuned_dir": os.path.join("props", "tuned"),
            "grace_evidence": None}


@dataclasses.dataclass
class FairTuning:
    """A parsed config (see benchmarks/configs/fair_tuning_2k.yaml for each key)."""
    path: str
    name: str
    data_path: str
    datasets: list
    space: str
    num_samples: int
    search_seed: int
    grace_period: int
    reduction_factor: int
    cpus: float
    recbole: dict
    variants: dict  # name -> {"model": str, "set": {key: value}}
    results_dir: str  # the records and the table go to <results_dir>/<name>{/,.md}
    tuned_dir: str    # the winners' yaml files
    grace_evidence: str  # <results_dir>/<it>/: run files of default runs (best epochs)

    # paths are relative to the working folder (the repository root in the documented commands)

    def output(self, dataset, variant):
        """The search folder of one variant (relative to the working folder)."""
        return os.path.join("saved", "tune", self.name, dataset, variant)

    def tuned(self, dataset, variant):
        """props/tuned/<model>[-<variant>]-<dataset>.yaml: the winner's RecBole yaml."""
        model = self.variants[variant]["model"]
        stem = model if variant == model else f"{model}-{variant}"
        return os.path.join(self.tuned_dir, f"{stem}-{dataset}.yaml")

    def record(self, dataset, variant, ext):
        """<results_dir>/<name>/<dataset>.<variant>.<ext>: the search's record (json) or trials
        table (csv)."""
        return os.path.join(self.results_dir, self.name, f"{dataset}.{variant}.{ext}")

    @property
    def report(self):
        """<results_dir>/<name>.md: the comparison's table."""
        return os.path.join(self.results_dir, f"{self.name}.md")

    def shared_args(self):
        """The tuner arguments every variant's search gets: the same space and budget."""
        return ["--space", self.space, "--num-samples", str(self.num_samples),
                "--seed", str(self.search_seed), "--grace-period", str(self.grace_period),
                "--reduction-factor", str(self.reduction_factor), "--cpus", f"{self.cpus:g}",
                f"--data_path={self.data_path}",
                *(f"--{k}={v}" for k, v in self.recbole.items())]

    def search_args(self, dataset, variant):
        """The `python -m recbole_llm2rec.tune` arguments of a new search of one variant."""
        spec = self.variants[variant]
        return ["--model", spec["model"], "--dataset", dataset, *self.shared_args(),
                *(f"--{k}={v}" for k, v in spec["set"].items()),
                "--output", self.output(dataset, variant),
                "--best-config", self.tuned(dataset, variant)]


def _fail(path, field, message, value=None):
    raise InputError(message, path=path, field=field, value=value)


def load_fair_tuning(path):
    """Read and check a fair-tuning config; InputError names the file and the key."""
    data = read_yaml(path, error=InputError)
    unknown = sorted(set(data) - KEYS - set(OPTIONAL))
    if unknown:
        _fail(path, unknown[0], f"unknown key (expected {', '.join(sorted(KEYS))})")
    missing = sorted(KEYS - set(data))
    if missing:
        _fail(path, missing[0], "missing")
    if not isinstance(data["datasets"], list) or not data["datasets"]:
        _fail(path, "datasets", "expected a non-empty list", data["datasets"])
    for key in ("num_samples", "search_seed", "grace_period", "reduction_factor"):
        if isinstance(data[key], bool) or not isinstance(data[key], int) or data[key] < 0:
            _fail(path, key, "expected a non-negative integer", data[key])
    if not isinstance(data["recbole"], dict):
        _fail(path, "recbole", "expected a mapping of RecBole settings", data["recbole"])
    variants = data["variants"]
    if not isinstance(variants, dict) or not variants:
        _fail(path, "variants", "expected a mapping of variant names", variants)
    parsed = {}
    for name, spec in variants.items():
        if not isinstance(spec, dict) or not isinstance(spec.get("model"), str) or \
                set(spec) - {"model", "set"} or not isinstance(spec.get("set", {}), dict):
            _fail(path, f"variants.{name}", "expected {model: <Model>, set: {key: value}}",
                  spec)
        clash = sorted(set(spec.get("set", {})) & set(data["recbole"]))
        if clash:
            _fail(path, f"variants.{name}.set.{clash[0]}",
                  "also in recbole: every variant must share the recbole settings")
        parsed[str(name)] = {"model": spec["model"], "set": dict(spec.get("set", {}))}
    return FairTuning(path=path, variants=parsed,
                      **{k: data[k] for k in KEYS - {"variants"}},
                      **{k: data.get(k, default) for k, default in OPTIONAL.items()})
