"""A pre-training pipeline from one yaml file: its stages in order, then extract.

    python -m pretrain.pipeline --config pretrain/configs/smollm2-135m_cpu.yaml \\
        --csft.max_steps=200 --seed=1

`stages` lists the training stages to run (default `[csft, mntp, ic]`, LLM2Rec; `[mntp, ic]`
is LLM2Vec): the first starts from `backbone`, each next one from the previous one's `final/`.
Top-level keys (`backbone`, `run_dir`, `datasets`, `data_path`, `seed`, ...) apply to every
stage; a section per stage (`csft`, `mntp`, `ic`, `extract`) overrides them. Extraction reads
the last stage's `final/` into `<Dataset>.<extract.name>.feat`; `extract.stages: [csft, mntp, ic]`
instead extracts each listed stage's `final/` into `<Dataset>.<name>_<stage>.feat`, the last
stage's into `<Dataset>.<name>.feat` as without it (the paper's stage ablation, from one run,
nothing retrained). Every input is
checked before the first stage starts. A rerun skips what is up to date, resumes an interrupted
stage from its last complete checkpoint, and redoes (moving the old outputs aside) every stage
and `.feat` file whose input model, data or settings changed (`pretrain.provenance`).
"""
import argparse
import dataclasses
import os

from pretrain import provenance, ranks, training
from pretrain.sequences import load_dataset_titles
from pretrain.stage_config import (STAGES, ConfigError, apply_overrides, build, pipeline_stages,
                                   read_yaml, stage_settings)
from recbole_llm2rec.errors import cli_main
from recbole_llm2rec.feat import FeatError, read_sidecar

SHARED_ONLY = {"backbone", "stages"}
# Extraction settings that change a .feat file's rows: sidecar key -> extract argument.
FEAT_SETTINGS = {"pooling": "pooling", "max_length": "max_length", "title_field": "title_field",
                 "normalized": "normalize", "prompt": "prompt"}


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


def extract_sources(raw, configs):
    """(model folder, .feat name) pairs to extract after the stages `configs` of `raw`: the last
    stage's `final/` as `extract.name`, or with `extract.stages`, each listed stage's `final/`
    as `<name>_<stage>`, except the last stage's, which keeps `<name>` (one name per table: the
    file a run without `extract.stages` writes). ConfigError naming a listed stage the pipeline does not run."""
    section = raw.get("extract") or {}
    name, stages, order = section.get("name"), section.get("stages"), list(configs)
    if stages is None:
        return [(training.final_dir(configs[order[-1]], order[-1]), name)]
    if isinstance(stages, str):
        stages = [stages]
    if not isinstance(stages, list) or not stages or len(set(stages)) != len(stages):
        raise ConfigError("expected a list of distinct stage names", field="extract.stages",
                          value=stages)
    for stage in stages:
        if stage not in order:
            raise ConfigError(f"not a stage of this pipeline ({', '.join(order)})",
                              field="extract.stages", value=stage)
    return [(training.final_dir(configs[stage], stage),
             name if stage == order[-1] else f"{name}_{stage}") for stage in stages]


def extract_argv(raw, model, datasets=None, overwrite=False, name=None):
    """Arguments of `pretrain.extract.main` from the `extract` section (`datasets` replaces
    its list; `overwrite` forces --overwrite; `name` replaces the .feat name)."""
    section = dict(raw.get("extract") or {})
    datasets = datasets or section.pop("datasets", None)
    section.pop("datasets", None)
    section.pop("stages", None)
    if name is not None and section.get("name"):
        section["name"] = name
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
    Returns the parsed extract arguments, one per `extract_sources` entry."""
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
    parsed = []
    for model, feat_name in extract_sources(raw, configs):
        argv = extract_argv(raw, model, name=feat_name)
        try:
            args = extract.build_parser().parse_args(argv)
        except SystemExit:
            raise ConfigError("bad settings", field="extract",
                              value=" ".join(argv[2:])) from None
        for name in args.dataset:
            load_dataset_titles(args.data_path, name, args.title_field)
            out = extract.output_path(args.data_path, name, args.name)
            if os.path.exists(out) and not args.overwrite and not ours(out, args.model):
                raise FeatError(f"{out}: already exists and was not made by this run; set "
                                f"extract.overwrite=true or pick another extract.name")
        parsed.append(args)
    return parsed


def ours(feat, model):
    """True when `feat`'s sidecar says it was extracted from model folder `model`."""
    return (read_sidecar(feat) or {}).get("backbone") == model


def feat_differences(feat, args):
    """Why `feat` is not what extraction with `args` from `args.model` would write now: missing,
    another model, other model content (fingerprint) or other settings. Empty when current."""
    meta = read_sidecar(feat)
    if not os.path.isfile(feat) or meta is None:
        return ["missing"]
    if meta.get("backbone") != args.model:
        return [f"made from {meta.get('backbone')!r}"]
    why = []
    if meta.get("model_fingerprint") != provenance.fingerprint(args.model):
        why.append(f"{args.model} changed ({provenance.short(meta.get('model_fingerprint'))} -> "
                   f"{provenance.short(provenance.fingerprint(args.model))})")
    recorded = dict(meta, normalized=meta.get("normalized", False))
    recorded["pooling"] = meta.get("pooling_option", meta.get("pooling"))  # `auto` as asked
    why += [f"{key} {recorded.get(key)!r} -> {getattr(args, arg)!r}"
            for key, arg in FEAT_SETTINGS.items() if recorded.get(key) != getattr(args, arg)]
    return why


def run(raw):
    """Run every listed stage, then extraction. Returns the .feat paths."""
    configs = stage_configs(raw)
    extracts = check_inputs(configs, raw)
    for stage, cfg in configs.items():
        STAGES[stage].run(cfg)
    return [path for args in extracts for path in extract_outputs(raw, args)]


def extract_outputs(raw, args):
    """Write the .feat files of one extraction (`args`) that are missing or out of date, moving
    the old ones aside. Under torchrun rank 0 decides and moves, then every process embeds its
    share of the items (`pretrain.extract`) and rank 0 writes. Returns their paths."""
    from pretrain import extract

    paths = {d: extract.output_path(args.data_path, d, args.name) for d in args.dataset}
    todo = []
    for dataset, path in paths.items() if ranks.is_main_process() else ():
        why = ["extract.overwrite is set"] if args.overwrite else feat_differences(path, args)
        if not why:
            print(f"[extract] {path} is up to date; nothing to do", flush=True)
            continue
        todo.append(dataset)
        if os.path.exists(path):
            moved = provenance.move_aside(path, companions=(".json",))
            print(f"[extract] redoing {path}: {'; '.join(why)}; the old file is {moved}",
                  flush=True)
    todo = ranks.broadcast_from_main(todo)
    if todo:
        # What existed is moved aside: it was ours, or the config allows replacing it.
        extract.main(extract_argv(raw, args.model, todo, overwrite=True, name=args.name))
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
