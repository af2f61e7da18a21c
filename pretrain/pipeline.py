"""The LLM2Rec pipeline from one yaml file: csft -> mntp -> ic -> extract.

    python -m pretrain.pipeline --config pretrain/configs/smollm2-135m_cpu.yaml \\
        --csft.max_steps=200 --seed=1

Top-level keys (`backbone`, `run_dir`, `datasets`, `data_path`, `seed`, ...) apply to every
stage; a section per stage (`csft`, `mntp`, `ic`, `extract`) overrides them. Every input is
checked before the first stage starts. Stages hand off through `<run_dir>/<stage>/final`; a
rerun skips finished stages and resumes an interrupted one from its last checkpoint.
"""
import argparse
import dataclasses
import json
import os

from pretrain import csft, mntp, ic, training
from recbole_llm2rec.feat import FeatError
from pretrain.sequences import load_dataset_titles
from pretrain.stage_config import (STAGE_CONFIGS, STAGES, ConfigError, apply_overrides, build,
                                   read_yaml, stage_settings)

RUNNERS = {"csft": csft.run, "mntp": mntp.run, "ic": ic.run}
SHARED_ONLY = {"backbone"}


def stage_configs(raw):
    """Resolved settings of each training stage. Returns {stage: config dataclass}."""
    known = SHARED_ONLY | set(STAGES) | {"extract"}
    known |= {f.name for cls in STAGE_CONFIGS.values() for f in dataclasses.fields(cls)}
    known.discard("model")  # per-stage only; the pipeline's start model is `backbone`
    unknown = sorted(k for k in raw if k not in known)
    if unknown:
        raise ConfigError(f"unknown top-level setting(s) {', '.join(map(repr, unknown))}")
    if not raw.get("backbone"):
        raise ConfigError("no 'backbone' (HF model folder of the base LLM) in the config")
    configs = {}
    for stage in STAGES:
        settings = stage_settings(raw, stage)
        if stage != "csft":
            settings.setdefault("model", None)  # hand-off through <run_dir>/<prev>/final
        configs[stage] = build(STAGE_CONFIGS[stage], settings)
    return configs


def extract_argv(raw, model, datasets=None, overwrite=False):
    """Arguments of `pretrain.extract.main` from the `extract` section (`datasets` replaces
    its list; `overwrite` forces --overwrite)."""
    section = dict(raw.get("extract") or {})
    datasets = datasets or section.pop("datasets", None)
    section.pop("datasets", None)
    if not datasets or not section.get("name"):
        raise ConfigError("section 'extract' needs 'datasets' (list) and 'name' (e.g. llm2rec)")
    section.setdefault("data_path", raw.get("data_path", "dataset/"))
    if overwrite:
        section["overwrite"] = True
    argv = ["--model", model, "--dataset", *map(str, datasets)]
    for key, value in section.items():
        if isinstance(value, bool):
            argv += [f"--{key}"] if value else []
        elif value is not None:
            argv += [f"--{key}", str(value)]
    return argv


def check_inputs(configs, raw):
    """Everything that can fail before training: backbone, tokenizer, mask token, datasets,
    extract settings and existing .feat files. Raises a ValueError subclass naming the culprit.
    Returns the parsed extract arguments."""
    from pretrain import extract

    backbone = configs["csft"].model
    tokenizer = training.load_tokenizer(backbone)
    mntp.check_backbone(backbone)
    mntp.mask_token_id(tokenizer, configs["mntp"].mask_token, where=backbone)
    for cfg in configs.values():
        for name in cfg.datasets:
            load_dataset_titles(cfg.data_path, name, cfg.title_field)
    argv = extract_argv(raw, training.final_dir(configs["ic"], "ic"))
    try:
        args = extract.build_parser().parse_args(argv)
    except SystemExit:
        raise ConfigError(f"section 'extract' has bad settings: {' '.join(argv[2:])}") from None
    for name in args.dataset:
        load_dataset_titles(args.data_path, name, args.title_field)
        out = extract.output_path(args.data_path, name, args.name)
        if os.path.exists(out) and not args.overwrite and not made_by(out, args.model):
            raise FeatError(f"{out}: already exists and was not made by this run; set "
                            f"extract.overwrite=true or pick another extract.name")
    return args


def made_by(feat, model):
    """True when `feat`'s sidecar names `model` and it is newer than that model's weights."""
    try:
        with open(feat + ".json", encoding="utf-8") as fh:
            backbone = json.load(fh).get("backbone")
        weights = max(os.path.getmtime(os.path.join(model, f)) for f in os.listdir(model))
    except (OSError, ValueError):
        return False
    return backbone == model and os.path.getmtime(feat) >= weights


def run(raw):
    """Run every stage, then extraction. Returns the .feat paths."""
    from pretrain import extract

    configs = stage_configs(raw)
    args = check_inputs(configs, raw)
    for stage in STAGES:
        RUNNERS[stage](configs[stage])
    paths = {d: extract.output_path(args.data_path, d, args.name) for d in args.dataset}
    todo = [d for d, p in paths.items() if args.overwrite or not made_by(p, args.model)]
    if todo and int(os.environ.get("RANK", "0")) == 0:  # one process extracts under torchrun
        # What exists now is either ours from an earlier run, or allowed by the config.
        extract.main(extract_argv(raw, args.model, todo, overwrite=True))
    return list(paths.values())


def main(argv=None):
    """Parse `--config <yaml>` plus dotted overrides and run the pipeline."""
    parser = argparse.ArgumentParser(prog="python -m pretrain.pipeline",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="pipeline yaml (pretrain/configs/)")
    args, overrides = parser.parse_known_args(argv)
    return run(apply_overrides(read_yaml(args.config), overrides))


if __name__ == "__main__":
    training.run_cli(main)
