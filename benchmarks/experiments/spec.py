"""An experiment config (yaml) and the runs it stands for.

A config names the datasets (optionally split into in-domain / out-of-domain blocks), the models,
the embedders (`text_emb` of the Text* models), the seeds, RecBole settings for every run,
optional named variants (extra RecBole settings, e.g. `item_repr: text+id`), the analyses and,
optionally, the cold-start protocol. Every key is documented in docs/experiments.md.
"""
import dataclasses
import os

from recbole_llm2rec.errors import InputError
from recbole_llm2rec import props
from recbole_llm2rec.yaml_file import read_yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RESULTS = os.path.join(ROOT, "benchmarks", "results")
DEFAULT_RECBOLE = {"epochs": 300, "show_progress": False}  # early stopping ends the runs
KEYS = {"name", "title", "notes", "data_path", "datasets", "models", "embedders", "seeds",
        "recbole", "variants", "baselines", "analyses", "cold_start", "results_dir", "saved_dir"}
NO_EMB = "-"       # text_emb of a model without a text table (SASRec, GRU4Rec)
NO_VARIANT = "-"   # the run without extra settings


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run: a model on a dataset with an embedder, variant and seed."""
    model: str
    dataset: str
    text_emb: str
    variant: str
    seed: int

    @property
    def file_name(self):
        """`<model>.<dataset>.<text_emb>[.<variant>].seed<k>.json` (the run-file name)."""
        parts = [self.model, self.dataset, self.text_emb]
        parts += [] if self.variant == NO_VARIANT else [self.variant]
        return ".".join(parts + [f"seed{self.seed}"]) + ".json"


def uses_text(model):
    """Whether `model` reads a `.feat` table (the Text* models and LLM-based ones)."""
    return model.startswith("Text")


@dataclasses.dataclass
class Experiment:
    """A parsed config."""
    path: str
    name: str
    title: str
    notes: str
    data_path: str
    blocks: dict          # block title -> [dataset]
    models: list
    embedders: list
    seeds: list
    recbole: dict
    variants: dict        # name -> {"set": {...}, "models": [...]}
    baselines: list       # row keys (model, text_emb, variant) compared against
    analyses: list
    cold_start: dict      # {} or {"fraction", "seed", "protocol", "data_path"}
    results_dir: str
    saved_dir: str = os.path.join(ROOT, "saved", "experiments")  # checkpoints: <name>/<run>/
    only_variants: list = None  # run only these variant names now (NO_VARIANT for none)

    @property
    def datasets(self):
        return [d for block in self.blocks.values() for d in block]

    @property
    def runs_dir(self):
        return os.path.join(self.results_dir, self.name)

    def runs(self):
        """Every run of the experiment: seeds, then datasets, models, embedders, variants."""
        runs = []
        for seed in self.seeds:  # seed outermost: a first full table comes early
            for dataset in self.datasets:
                for model in self.models:
                    embs = self.embedders if uses_text(model) else [NO_EMB]
                    variants = [NO_VARIANT] + [v for v, spec in self.variants.items()
                                               if model in spec["models"]]
                    if self.only_variants is not None:
                        variants = [v for v in variants if v in self.only_variants]
                    runs += [Run(model, dataset, emb, variant, seed)
                             for emb in embs for variant in variants
                             if variant == NO_VARIANT or emb == NO_EMB
                             or emb in self.variants[variant]["embedders"]]
        return runs

    def settings(self, run):
        """The RecBole settings of `run` on top of props/ (config dict)."""
        config = {**self.recbole, "seed": run.seed, "data_path": self.data_path}
        if run.text_emb != NO_EMB:
            config["text_emb"] = run.text_emb
        if run.variant != NO_VARIANT:
            config.update(self.variant_settings(run))
        return config

    def variant_settings(self, run):
        """The variant's `set`, with `{dataset}` and `{seed}` in its strings filled in for `run`
        (e.g. a RAT teacher checkpoint per dataset)."""
        return {key: value.format(dataset=run.dataset, seed=run.seed)
                if isinstance(value, str) else value
                for key, value in self.variants[run.variant]["set"].items()}


def _list(raw, key, path, default=None, kind=str):
    value = raw.get(key, default)
    if value is None:
        raise InputError("missing", path=path, field=key)
    if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
        raise InputError(f"must be a list of {kind.__name__}", path=path, field=key, value=value)
    return value


def only(chosen, known, key, path, field=None):
    """`chosen` if every value is among the config's `known` values of `key`, else InputError
    naming the others (at `field`, default `key`)."""
    extra = sorted(set(chosen) - set(known))
    if extra:
        raise InputError(f"not among the config's {key}", path=path, field=field or key,
                         value=extra)
    return chosen


def parse_baseline(label):
    """'SASRec' or 'TextSASRec/minilm' or 'TextSASRec/minilm/text+id' -> (model, emb, variant)."""
    parts = label.split("/")
    return tuple(parts + [NO_EMB, NO_VARIANT][len(parts) - 1:])[:3]


def load_experiment(path, results_dir=RESULTS):
    """Read and check an experiment config. Returns an `Experiment`."""
    raw = read_yaml(path, error=InputError)
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise InputError(f"unknown keys; known: {sorted(KEYS)}", path=path, field=unknown[0])
    datasets = raw.get("datasets")
    if isinstance(datasets, list):
        blocks = {"Datasets": _list(raw, "datasets", path)}
    elif isinstance(datasets, dict):
        extra = sorted(set(datasets) - {"in_domain", "out_of_domain"})
        if extra or not any(datasets.values()):
            raise InputError("give a list, or in_domain / out_of_domain lists", path=path,
                             field="datasets", value=datasets)
        blocks = {title: _list({f"datasets.{key}": datasets[key]}, f"datasets.{key}", path)
                  for title, key in (("In-domain", "in_domain"), ("Out-of-domain", "out_of_domain"))
                  if datasets.get(key)}
    else:
        raise InputError("missing or not a list", path=path, field="datasets", value=datasets)
    models = _list(raw, "models", path)
    embedders = _list(raw, "embedders", path, default=[props.default("text_emb")])
    variants = {}
    for name, spec in (raw.get("variants") or {}).items():
        if not isinstance(spec, dict) or not isinstance(spec.get("set", {}), dict):
            raise InputError("a variant is {set: {key: value}, models: [..], embedders: [..]}",
                             path=path, field=f"variants.{name}", value=spec)
        variants[str(name)] = {"set": dict(spec.get("set") or {}),
                               "models": list(spec.get("models") or
                                              [m for m in models if uses_text(m)]),
                               "embedders": list(spec.get("embedders") or embedders)}
        only(variants[str(name)]["embedders"], embedders, "embedders", path,
             field=f"variants.{name}.embedders")
    cold = raw.get("cold_start") or {}
    if cold:
        if not isinstance(cold, dict) or set(cold) - {"fraction", "seed", "data_path",
                                                      "protocol"}:
            raise InputError("cold_start takes fraction, seed, data_path, protocol", path=path,
                             field="cold_start", value=cold)
        from recbole_llm2rec.evaluation.cold_start import PROTOCOLS

        if cold.get("protocol", "unseen") not in PROTOCOLS:
            raise InputError(f"not one of {list(PROTOCOLS)}", path=path,
                             field="cold_start.protocol", value=cold["protocol"])
        cold = {"fraction": float(cold.get("fraction", 0.1)), "seed": int(cold.get("seed", 0)),
                "protocol": cold.get("protocol", "unseen"),
                "data_path": os.path.abspath(cold.get("data_path")
                                             or raw.get("data_path", "dataset/"))}
    analyses = _list(raw, "analyses", path, default=[])
    from recbole_llm2rec.evaluation.analyses import ANALYSES

    for a in analyses:
        if a not in ANALYSES:
            raise InputError(f"unknown analysis; choose from {list(ANALYSES)}", path=path,
                             field="analyses", value=a)
    baselines = [parse_baseline(b) for b in
                 _list(raw, "baselines", path, default=[m for m in models if not uses_text(m)])]
    return Experiment(
        path=path, name=str(raw.get("name") or os.path.splitext(os.path.basename(path))[0]),
        title=str(raw.get("title") or ""), notes=str(raw.get("notes") or "").strip(),
        data_path=os.path.abspath(str(raw.get("data_path", "dataset/"))), blocks=blocks,
        models=models,
        embedders=embedders, seeds=_list(raw, "seeds", path, default=[0, 1, 2], kind=int),
        recbole={**DEFAULT_RECBOLE, **(raw.get("recbole") or {})}, variants=variants,
        baselines=baselines, analyses=analyses, cold_start=cold,
        results_dir=os.path.join(ROOT, raw["results_dir"]) if raw.get("results_dir")
        else results_dir,
        saved_dir=os.path.join(ROOT, raw["saved_dir"]) if raw.get("saved_dir")
        else os.path.join(ROOT, "saved", "experiments"))
