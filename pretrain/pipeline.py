"""A pre-training pipeline from one yaml file: its stages in order, then extract.

    python -m pretrain.pipeline --config pretrain/configs/smollm2-135m_cpu.yaml \\
        --csft.max_steps=200 --seed=1

`stages` lists the training stages to run (default `[csft, mntp, ic]`, LLM2Rec; `[mntp, ic]`
is LLM2Vec): the first starts from `backbone`, each next one from the previous one's `final/`.
Top-level keys (`backbone`, `run_dir`, `datasets`, `data_path`, `seed`, ...) apply to every
stage; a section per stage (`csft`, `mntp`, `ic`, `extract`) overrides them. Every input is
checked before the first stage starts. A rerun skips what is up to date, resumes an interrupted
stage from its last complete checkpoint, and redoes (moving the old outputs aside) every stage
and `.feat` file whose input model, data or settings changed (`pretrain.provenance`).
"""
import argparse
import dataclasses
import json
import os

from pretrain import provenance, training
from pretrain.sequences import load_dataset_titles
from pretrain.stage_config import (STAGES, ConfigError, apply_overrides, build, pipeline_stages,
                                   read_yaml, stage_settings)
from recbole_llm2rec.errors import cli_main
from recbole_llm2rec.feat import FeatError

SHARED_ONLY = {"backbone", "stages"}
# Extraction settings recorded in the .feat sidecar that change its rows.
FEAT_SETTINGS = ("pooling", "max_length", "title_field", "prompt")


def stage_configs(raw):
    """Resolved settings of each listed training stage, in order. Returns {stage: config}."""
    order = pipeline_stages(raw)
    known = SHARED_ONLY | set(STAGES) | {"extract"}
    known |= {f.name for stage in STAGES.values() for f in dataclasses.fields(stage.config)}
    known.discard("model")  # per-stage only; the pipeline's start model is `backbone`
    unknown = sorted(k for k in raw if k not in known)
    if unknown:
        raise ConfigError(f"unknown top-level setting(s) {', '.join(map(repr, unknown))}")
    if not raw.get("backbone"):
        raise ConfigError("no HF model folder of the base LLM in the config", field="backbone")
    return {stage: build(STAGES[stage].config, stage_settings(raw, stage)) for stage in order}


def extract_argv(raw, model, datasets=None, overwrite=False):
    """Arguments of `pretrain.extract.main` from the `extract` section (`datasets` replaces
    its list; `overwrite` forces --overwrite)."""
    section = dict(raw.get("extract") or {})
    datasets = datasets or section.pop("datasets", None)
    section.pop("datasets", None)
    if not datasets or not section.get("name"):
        raise ConfigError("needs 'datasets' (list) and 'name' (e.g. llm2rec)", field="extract",
                          value=raw.get("extract"))
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
    extract settings and existing .feat files. Raises an InputError naming the culprit.
    Returns the parsed extract arguments."""
    from pretrain import extract, mntp

    first = next(iter(configs.values()))
    tokenizer = training.load_tokenizer(first.model)
    if {"mntp", "ic"} & set(configs):  # the bidirectional stages
        mntp.check_backbone(first.model)
    if "mntp" in configs:
        mntp.mask_token_id(tokenizer, configs["mntp"].mask_token, where=first.model)
    for cfg in configs.values():
        for name in cfg.datasets:
            load_dataset_titles(cfg.data_path, name, cfg.title_field)
    last = list(configs)[-1]
    argv = extract_argv(raw, training.final_dir(configs[last], last))
    try:
        args = extract.build_parser().parse_args(argv)
    except SystemExit:
        raise ConfigError("bad settings", field="extract", value=" ".join(argv[2:])) from None
    for name in args.dataset:
        load_dataset_titles(args.data_path, name, args.title_field)
        out = extract.output_path(args.data_path, name, args.name)
        if os.path.exists(out) and not args.overwrite and not ours(out, args.model):
            raise FeatError(f"{out}: already exists and was not made by this run; set "
                            f"extract.overwrite=true or pick another extract.name")
    return args


def sidecar(feat):
    """The `.feat` file's sidecar meta (dict), or None when absent or unreadable."""
    try:
        with open(feat + ".json", encoding="utf-8") as fh:
            meta = json.load(fh)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def ours(feat, model):
    """True when `feat`'s sidecar says it was extracted from model folder `model`."""
    return (sidecar(feat) or {}).get("backbone") == model


def feat_differences(feat, args):
    """Why `feat` is not what extraction with `args` from `args.model` would write now: missing,
    another model, other model content (fingerprint) or other settings. Empty when current."""
    meta = sidecar(feat)
    if not os.path.isfile(feat) or meta is None:
        return ["missing"]
    if meta.get("backbone") != args.model:
        return [f"made from {meta.get('backbone')!r}"]
    why = []
    if meta.get("model_fingerprint") != provenance.fingerprint(args.model):
        why.append(f"{args.model} changed ({provenance.short(meta.get('model_fingerprint'))} -> "
                   f"{provenance.short(provenance.fingerprint(args.model))})")
    why += [f"{key} {meta.get(key)!r} -> {getattr(args, key)!r}" for key in FEAT_SETTINGS
            if meta.get(key) != getattr(args, key)]
    return why


def run(raw):
    """Run every listed stage, then extraction. Returns the .feat paths."""
    from pretrain import extract

    configs = stage_configs(raw)
    args = check_inputs(configs, raw)
    for stage, cfg in configs.items():
        STAGES[stage].run(cfg)
    paths = {d: extract.output_path(args.data_path, d, args.name) for d in args.dataset}
    if not training.is_main_process():  # one process extracts under torchrun
        return list(paths.values())
    todo = []
    for dataset, path in paths.items():
        why = ["extract.overwrite is set"] if args.overwrite else feat_differences(path, args)
        if not why:
            print(f"[extract] {path} is up to date; nothing to do", flush=True)
            continue
        todo.append(dataset)
        if os.path.exists(path):
            moved = provenance.move_aside(path, companions=(".json",))
            print(f"[extract] redoing {path}: {'; '.join(why)}; the old file is {moved}",
                  flush=True)
    if todo:
        # What existed is moved aside: it was ours, or the config allows replacing it.
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
    cli_main(main, "python -m pretrain.pipeline")
