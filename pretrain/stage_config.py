"""Settings of the pre-training stages, and the one registry of stages (`STAGES`).

Each stage (`csft`, `mntp`, `ic`, LLMEmb's `scft`) has a dataclass of settings. A stage command reads
`--config <yaml>` (top-level shared keys plus the stage's own section), then every field as
`--<field> value`. The pipeline applies dotted overrides (`--csft.max_steps=200`) to the yaml
and runs the stages its `stages` list names, each starting from the previous one's `final/`.
"""
import argparse
import dataclasses
import importlib
import os
import typing
from dataclasses import dataclass, field

import yaml

from recbole_llm2rec import yaml_file
from recbole_llm2rec.errors import InputError


class ConfigError(InputError):
    """A setting is missing, unknown, or has a bad value (file, line, field, value when known)."""


@dataclass
class StageConfig:
    """Settings shared by the training stages."""

    run_dir: str = None  # (str) folder of the run; the stage writes <run_dir>/<stage>/
    model: str = None  # (str) HF model folder to start from; default <run_dir>/<previous stage>/final
    datasets: typing.List[str] = field(default_factory=list)  # (list) datasets mixed for training
    data_path: str = "dataset/"  # (str) folder holding <Dataset>/<Dataset>.inter and .item
    title_field: str = "title"  # (str) text field of the .item files
    seed: int = 42  # (int) seed of sampling, shuffling and init
    max_steps: int = 1000  # (int) optimizer steps
    learning_rate: float = 5e-5  # (float) peak learning rate (AdamW, linear decay)
    warmup_steps: int = 0  # (int) linear warm-up steps
    weight_decay: float = 0.0  # (float) AdamW weight decay
    batch_size: int = 32  # (int) effective batch over all devices and accumulation steps
    micro_batch_size: int = 32  # (int) examples per device per forward pass
    max_length: int = 512  # (int) tokens per example; longer inputs are cut
    max_examples: int = None  # (int) random subset of the training examples; null = all
    lora_r: int = None  # (int) LoRA rank; null = full fine-tune
    lora_alpha: int = 32  # (int) LoRA alpha
    lora_dropout: float = 0.05  # (float) LoRA dropout
    save_steps: int = 100  # (int) checkpoint every N steps (resume point)
    save_total_limit: int = 2  # (int) checkpoints kept
    logging_steps: int = 10  # (int) log the loss every N steps
    gradient_checkpointing: bool = False  # (bool) trade compute for memory
    bf16: str = "auto"  # (str) auto | true | false; auto = bf16 on a GPU that supports it
    attn_implementation: str = "auto"  # (str) auto | eager | sdpa | flash_attention_2
    report_to: typing.List[str] = field(default_factory=lambda: ["tensorboard"])  # (list) trackers
    dataloader_num_workers: int = 0  # (int) DataLoader worker processes


@dataclass
class CSFTConfig(StageConfig):
    """CSFT: next-item title generation from the titles of the previous items (causal LM)."""

    learning_rate: float = 3e-4
    warmup_steps: int = 200
    batch_size: int = 128
    micro_batch_size: int = 4
    max_steps: int = 10000
    max_length: int = 1024
    save_steps: int = 1000
    max_history: int = 10  # (int) previous items in the input
    group_by_length: bool = True  # (bool) batch examples of similar length (less padding)


@dataclass
class MNTPConfig(StageConfig):
    """MNTP: bidirectional masked next-token prediction on single item titles."""

    mlm_probability: float = 0.2  # (float) fraction of title tokens selected for prediction
    mask_token: str = "_"  # (str) existing vocabulary token used as the mask
    group_by_length: bool = True  # (bool) batch titles of similar length (less padding)


@dataclass
class ICConfig(StageConfig):
    """IC (SimCSE): two dropout views of each title, in-batch contrastive loss."""

    learning_rate: float = 2e-4
    warmup_steps: int = 300
    batch_size: int = 256
    micro_batch_size: int = 256
    temperature: float = 0.2  # (float) softmax temperature over cosine similarities
    attention_dropout: float = 0.2  # (float) attention dropout making the two views differ
    max_grad_norm: float = 1.0  # (float) gradient clipping
    group_by_length: bool = False  # (bool) False: random batches give harder in-batch negatives


@dataclass
class SCFTConfig(StageConfig):
    """SCFT (LLMEmb): two attribute-dropped views of each item prompt, causal attention, mean
    pooling, symmetric in-batch contrastive loss with a trainable temperature; LoRA."""

    learning_rate: float = 2e-4
    batch_size: int = 64
    micro_batch_size: int = 64
    max_steps: int = 4000
    max_length: int = 256
    lora_r: int = 8  # (int) LoRA rank (reference: 8); null = full fine-tune
    lora_dropout: float = 0.1
    drop_ratio: float = 0.4  # (float) fraction of an item's attributes (title words) each view drops
    temperature: float = 0.05  # (float) initial value of the trainable softmax temperature
    max_grad_norm: float = 1.0  # (float) gradient clipping
    group_by_length: bool = False  # (bool) False: random batches give harder in-batch negatives


@dataclass(frozen=True)
class Stage:
    """A training stage: its settings class, the module whose `run(cfg)` trains it, and the stage
    whose `final/` it starts from when run on its own (None: the backbone, `--model`)."""

    config: type
    module: str
    previous: str = None

    def run(self, cfg):
        """Train with settings `cfg` (module imported here: HF imports). Returns `final/`'s path."""
        return importlib.import_module(self.module).run(cfg)


# The one registry of training stages. A new stage (e.g. LLMEmb's SCFT) is a module with
# `run(cfg)`, a settings class and one entry here; a pipeline yaml lists the stages it runs.
STAGES = {
    "csft": Stage(CSFTConfig, "pretrain.csft"),
    "mntp": Stage(MNTPConfig, "pretrain.mntp", previous="csft"),
    "ic": Stage(ICConfig, "pretrain.ic", previous="mntp"),
    "scft": Stage(SCFTConfig, "pretrain.scft"),  # LLMEmb, from the backbone
}
DEFAULT_PIPELINE = ["csft", "mntp", "ic"]  # LLM2Rec; LLM2Vec is [mntp, ic]

# Settings that cannot change what a stage produces: where things are (the input model and
# data are fingerprinted by content instead), how often it saves or logs, and how the same
# computation is carried out. Every other setting is part of a stage's provenance.
NOT_RESULT = ("run_dir", "model", "data_path", "save_steps", "save_total_limit", "logging_steps",
              "report_to", "dataloader_num_workers", "gradient_checkpointing",
              "attn_implementation")


def result_settings(cfg):
    """The settings of `cfg` that can change the stage's output. Returns a dict."""
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in NOT_RESULT}


def final_path(run_dir, stage):
    """Folder of a stage's finished model: `<run_dir>/<stage>/final`."""
    return os.path.join(run_dir, stage, "final")


def pipeline_stages(raw):
    """The stages a pipeline dict runs, in order (`stages`, default csft, mntp, ic).
    ConfigError naming an unknown or repeated stage."""
    names = raw.get("stages", DEFAULT_PIPELINE)
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list) or not names:
        raise ConfigError("expected a non-empty list of stage names", field="stages", value=names)
    for name in names:
        if name not in STAGES:
            raise ConfigError(f"unknown stage (known: {', '.join(STAGES)})", field="stages",
                              value=name)
    if len(set(names)) != len(names):
        raise ConfigError("a stage is listed twice", field="stages", value=names)
    return list(names)


def _type_of(cls, name):
    hints = typing.get_type_hints(cls)
    return hints[name]


def coerce(cls, name, value):
    """`value` converted to the type of field `name` of `cls`; ConfigError naming both if impossible."""
    names = {f.name for f in dataclasses.fields(cls)}
    if name not in names:
        raise ConfigError(f"unknown setting {name!r} for {cls.__name__} "
                          f"(known: {', '.join(sorted(names))})", field=name)
    kind = _type_of(cls, name)
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
        return None
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(value)
                return value.lower() in ("true", "1", "yes")
            return bool(value)
        if kind in (typing.List[str], list):
            if isinstance(value, str):
                value = yaml.safe_load(value) if value.startswith("[") else value.split(",")
            return [str(v) for v in value]
        if kind is float:
            return float(value)
        if kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"not a valid {getattr(kind, '__name__', str(kind))}", field=name,
                          value=value) from None


def read_yaml(path, error=ConfigError):
    """The pipeline yaml at `path` as a dict (`recbole_llm2rec.yaml_file.read_yaml`)."""
    return yaml_file.read_yaml(path, error)


def stage_settings(raw, stage):
    """Flatten a pipeline dict for `stage`: shared top-level keys, the model it starts from
    (`backbone` for the first stage of `stages`, else the previous listed stage's `final/`;
    for a stage not listed, its registry default), then the stage's section."""
    shared = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    section = raw.get(stage) or {}
    if not isinstance(section, dict):
        raise ConfigError("a stage's section must be a mapping", field=stage, value=section)
    names = {f.name for f in dataclasses.fields(STAGES[stage].config)}
    out = {k: v for k, v in shared.items() if k in names}
    order = pipeline_stages(raw)
    previous = order[order.index(stage) - 1] if stage in order[1:] else \
        None if stage in order else STAGES[stage].previous
    if previous is None:
        out["model"] = raw.get("backbone")
    elif raw.get("run_dir"):
        out["model"] = final_path(str(raw["run_dir"]), previous)
    out.update(section)
    return out


def build(cls, settings):
    """An instance of `cls` from a dict of settings (values coerced, unknown keys rejected)."""
    cfg = cls(**{k: coerce(cls, k, v) for k, v in settings.items()})
    validate(cfg)
    return cfg


def _check(cfg, name, ok, rule):
    """ConfigError naming setting `name` and its value unless `ok`."""
    if not ok:
        raise ConfigError(f"must be {rule}", field=name, value=getattr(cfg, name))


def validate(cfg):
    """Raise ConfigError on settings that cannot work, before anything is loaded."""
    if not cfg.run_dir:
        raise ConfigError("run_dir is not set: pass --run_dir (the stage writes <run_dir>/<stage>/)")
    if not cfg.datasets:
        raise ConfigError("no training datasets: pass --datasets NAME [NAME ...]")
    for name in ("max_steps", "batch_size", "micro_batch_size", "max_length", "save_steps",
                 "logging_steps"):
        _check(cfg, name, getattr(cfg, name) > 0, "positive")
    if cfg.batch_size % cfg.micro_batch_size:
        raise ConfigError(f"batch_size {cfg.batch_size} is not a multiple of micro_batch_size "
                          f"{cfg.micro_batch_size}", field="batch_size", value=cfg.batch_size)
    _check(cfg, "bf16", cfg.bf16 in ("auto", "true", "false"), "auto, true or false")
    _check(cfg, "attn_implementation",
           cfg.attn_implementation in ("auto", "eager", "sdpa", "flash_attention_2"),
           "auto, eager, sdpa or flash_attention_2")
    if hasattr(cfg, "mlm_probability"):
        _check(cfg, "mlm_probability", 0 < cfg.mlm_probability < 1, "in (0, 1)")
    if hasattr(cfg, "temperature"):
        _check(cfg, "temperature", cfg.temperature > 0, "positive")
    if hasattr(cfg, "drop_ratio"):
        _check(cfg, "drop_ratio", 0 <= cfg.drop_ratio < 1, "in [0, 1)")
    if hasattr(cfg, "attention_dropout"):
        _check(cfg, "attention_dropout", 0 <= cfg.attention_dropout < 1, "in [0, 1)")


def parse_stage_args(stage, argv=None):
    """The settings of `stage` from `--config <yaml>` and `--<field> value` options."""
    cls = STAGES[stage].config
    parser = argparse.ArgumentParser(prog=f"python -m pretrain.{stage}", description=cls.__doc__)
    parser.add_argument("--config", help="pipeline yaml: shared keys plus the stage's section")
    for f in dataclasses.fields(cls):
        kind = _type_of(cls, f.name)
        many = kind in (typing.List[str], list)
        parser.add_argument(f"--{f.name}", nargs="+" if many else None, default=argparse.SUPPRESS,
                            help=_field_help(cls, f.name))
    args = vars(parser.parse_args(argv))
    config = args.pop("config", None)
    settings = stage_settings(read_yaml(config), stage) if config else {}
    settings.update(args)
    return build(cls, settings)


def _field_help(cls, name):
    value = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = value.default_factory() if value.default is dataclasses.MISSING else value.default
    return f"default: {default}"


def apply_overrides(raw, overrides):
    """Apply `--a.b=value` / `--a.b value` overrides (yaml-parsed values) to the dict `raw`."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    items, i = [], 0
    while i < len(overrides):
        arg = overrides[i]
        if not arg.startswith("--"):
            raise ConfigError("unexpected argument: use --key=value or --section.key=value",
                              value=arg)
        if "=" in arg:
            key, value = arg[2:].split("=", 1)
        elif i + 1 < len(overrides) and not overrides[i + 1].startswith("--"):
            key, value = arg[2:], overrides[i + 1]
            i += 1
        else:
            raise ConfigError("override has no value", field=arg[2:])
        items.append((key, value))
        i += 1
    for key, value in items:
        parts = key.split(".")
        if len(parts) > 2 or not all(parts):
            raise ConfigError("override: use --key=value or --section.key=value", field=key,
                              value=value)
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"override is not a valid yaml value: "
                              f"{getattr(err, 'problem', None) or err}", field=key,
                              value=value) from None
        if len(parts) == 2:
            section = raw.setdefault(parts[0], {})
            if not isinstance(section, dict):
                raise ConfigError(f"override: {parts[0]!r} is not a section", field=key,
                                  value=value)
            section[parts[1]] = parsed
        else:
            raw[key] = parsed
    return raw


def save_yaml(cfg, path):
    """Write the resolved settings `cfg` (a dataclass) as yaml, atomically."""
    from recbole_llm2rec.feat import atomic_write_text
    atomic_write_text(path, lambda fh: yaml.safe_dump(dataclasses.asdict(cfg), fh, sort_keys=False))
