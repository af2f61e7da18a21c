"""Trainer plumbing shared by the stages: tokenizer checks, the Trainer, resume, final save.

A stage writes `<run_dir>/<stage>/`: `checkpoint-N/` (Trainer), `final/` (HF model + tokenizer
+ provenance.json, renamed into place only when complete), `config.yaml`, `data_stats.json`,
`provenance.json` and `logs/` (tensorboard). A stage whose provenance differs from what this
run would make is moved aside and redone (`pretrain.provenance`).
"""
import json
import os
import shutil
import tempfile

import torch

from pretrain import provenance, ranks, steps
from pretrain.batching import MicroBatches, StepSampler
from pretrain.checkpoints import latest_checkpoint
from pretrain.stage_config import STAGES, ConfigError, final_path, parse_stage_args, save_yaml
from recbole_llm2rec import model_folder



def stage_dir(cfg, stage):
    """Output folder of `stage`: `<run_dir>/<stage>`."""
    return os.path.join(cfg.run_dir, stage)


def final_dir(cfg, stage):
    """Folder of a stage's finished model: `<run_dir>/<stage>/final`."""
    return final_path(cfg.run_dir, stage)


def stage_trainer_class():
    """HF Trainer whose steps do not depend on the number of processes (`pretrain.batching`,
    `pretrain.steps`): it samples whole effective batches (`StepSampler`), takes a process's
    share of a step as one dataloader batch cut into micro-batches, and accumulates their
    gradients itself. A contrastive stage sets `contrastive` and defines `embed` and
    `pair_loss`. Defined lazily: HF import."""
    from transformers import Trainer

    class StageTrainer(Trainer):
        """Trainer running `pretrain.steps` over the micro-batches of each step."""

        contrastive = False

        def _get_train_sampler(self):
            args = self.args
            lengths = [len(f.get("input_ids", ())) for f in self.train_dataset.features]
            return StepSampler(lengths, args.train_batch_size * args.world_size,
                               args.group_by_length, seed=args.data_seed if args.data_seed
                               is not None else args.seed, processes=args.world_size)

        def training_step(self, model, inputs):
            model.train()
            batches = self._prepare_inputs(inputs)["micro_batches"]
            if self.contrastive:
                return steps.contrastive_step(self, model, batches)
            return steps.token_step(self, model, batches)

        def shared_parameters(self):
            """Trainable parameters outside the model (averaged over processes by hand)."""
            return []

        def _load_optimizer_and_scheduler(self, checkpoint):
            # Several CPU processes: HF maps the optimizer state to args.device, `cpu:<rank>`,
            # which torch.load cannot restore to; plain `cpu` is the same memory.
            if self.args.device.type != "cpu" or self.args.world_size == 1:
                return super()._load_optimizer_and_scheduler(checkpoint)
            real = torch.load

            def load(f, *args, map_location=None, **kwargs):
                if torch.device(map_location or "cpu").type == "cpu":
                    map_location = "cpu"
                return real(f, *args, map_location=map_location, **kwargs)

            torch.load = load
            try:
                return super()._load_optimizer_and_scheduler(checkpoint)
            finally:
                torch.load = real

    return StageTrainer


def input_model(cfg, stage):
    """The model folder a stage starts from: `cfg.model`, else the `final/` of its registry's
    previous stage."""
    if cfg.model:
        return cfg.model
    previous = STAGES[stage].previous
    if previous is None:
        raise ConfigError(f"{stage}: no model to start from; pass --model <HF model folder>",
                          field="model")
    return final_dir(cfg, previous)


def check_model_folder(path):
    """ConfigError unless `path` is a Hugging Face model folder (config.json, a tokenizer)."""
    model_folder.check_model_folder(path, ConfigError, not_found=(
        "model folder not found (run the previous stage first, or pass --model)"))


def load_tokenizer(path):
    """The tokenizer saved in model folder `path` (pad = EOS when it has no pad token)."""
    from transformers import AutoTokenizer

    check_model_folder(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.eos_token_id is None:
        raise ConfigError("tokenizer has no EOS token", path=path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def use_bf16(cfg):
    """Whether to train in bf16: 'auto' means on a CUDA device that supports it."""
    if cfg.bf16 == "auto":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return cfg.bf16 == "true"


def attn_implementation(cfg):
    """The attention kernel: flash-attn-2 on GPU when installed, else sdpa (for 'auto')."""
    from pretrain.models import default_attn_implementation

    return default_attn_implementation() if cfg.attn_implementation == "auto" else \
        cfg.attn_implementation


def model_dtype(cfg):
    """Weights dtype: bf16 when training in bf16 (as the reference does), else float32."""
    return torch.bfloat16 if use_bf16(cfg) else torch.float32


def accumulation_steps(cfg):
    """Gradient accumulation making `batch_size` the effective batch over all processes."""
    world = ranks.world_size()
    per_step = cfg.micro_batch_size * world
    if cfg.batch_size % per_step:
        raise ConfigError(f"not a multiple of micro_batch_size {cfg.micro_batch_size} x "
                          f"{world} processes", field="batch_size", value=cfg.batch_size)
    return cfg.batch_size // per_step


def apply_lora(model, cfg):
    """Wrap `model` with LoRA adapters on all linear layers when `cfg.lora_r` is set. The
    adapters are initialised on the CPU before the Trainer seeds torch: from `cfg.seed`, in a
    forked CPU RNG, so they are the same whatever ran before in the process, whose RNG stays
    where it was."""
    if not cfg.lora_r:
        return model
    import torch.distributed.tensor  # noqa: F401  peft reads it without importing it
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                      target_modules="all-linear", bias="none")
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(cfg.seed)
        return get_peft_model(model, lora)


def training_arguments(cfg, stage, **overrides):
    """HF TrainingArguments of a stage (checkpoints and tensorboard logs under its folder)."""
    from transformers import TrainingArguments

    out = stage_dir(cfg, stage)
    settings = dict(
        output_dir=out, logging_dir=os.path.join(out, "logs"), max_steps=cfg.max_steps,
        # a process's share of a step is one batch; pretrain.steps accumulates its micro-batches
        per_device_train_batch_size=cfg.micro_batch_size * accumulation_steps(cfg),
        gradient_accumulation_steps=1, learning_rate=cfg.learning_rate,
        lr_scheduler_type="linear", warmup_steps=cfg.warmup_steps, weight_decay=cfg.weight_decay,
        optim="adamw_torch", max_grad_norm=getattr(cfg, "max_grad_norm", 1.0),
        logging_steps=cfg.logging_steps, save_strategy="steps", save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit, seed=cfg.seed, data_seed=cfg.seed,
        bf16=use_bf16(cfg), gradient_checkpointing=cfg.gradient_checkpointing,
        group_by_length=cfg.group_by_length, report_to=list(cfg.report_to or []) or "none",
        dataloader_num_workers=cfg.dataloader_num_workers, remove_unused_columns=False,
        ddp_find_unused_parameters=False, save_safetensors=True, use_cpu=not torch.cuda.is_available())
    settings.update(overrides)
    return TrainingArguments(**settings)


def make_trainer(cfg, stage, model, tokenizer, dataset, collator, trainer_class=None,
                 **arguments):
    """The Trainer of a stage: `model` without KV cache and LoRA-wrapped when `cfg.lora_r`,
    trained on `dataset` batched by `collator`; `arguments` override TrainingArguments.
    `trainer_class` defaults to `stage_trainer_class()`. Returns (trainer, model)."""
    from transformers import set_seed

    model.config.use_cache = False
    set_seed(cfg.seed)  # LoRA's initial weights: from the seed, not from what ran before
    model = apply_lora(model, cfg)
    trainer_class = trainer_class or stage_trainer_class()
    trainer = trainer_class(model=model, args=training_arguments(cfg, stage, **arguments),
                            train_dataset=dataset, tokenizer=tokenizer,
                            data_collator=MicroBatches(collator, cfg.micro_batch_size))
    return trainer, model


def write_json(path, obj):
    """Write `obj` as indented json, atomically."""
    from recbole_llm2rec.feat import atomic_write_text

    atomic_write_text(path, lambda fh: json.dump(obj, fh, indent=2, sort_keys=True))


def save_run_info(cfg, stage, stats, record):
    """Write the resolved config (`config.yaml`), data statistics (`data_stats.json`) and what
    the run is made from (`provenance.json`)."""
    if not ranks.is_main_process():
        return
    out = stage_dir(cfg, stage)
    save_yaml(cfg, os.path.join(out, "config.yaml"))
    write_json(os.path.join(out, "data_stats.json"), stats)
    provenance.write(out, record)


def save_final(trainer, model, tokenizer, cfg, stage, record):
    """Save `model` (LoRA merged) + tokenizer + provenance `record` to `<stage>/final/` via a
    temp folder and rename."""
    trainer.accelerator.wait_for_everyone()
    out = stage_dir(cfg, stage)
    final = final_dir(cfg, stage)
    if trainer.args.should_save:
        model = trainer.accelerator.unwrap_model(model)
        if hasattr(model, "merge_and_unload"):
            model = model.merge_and_unload()
        for name in os.listdir(out):  # left by a run killed while saving
            if name.startswith("final.") and name.endswith(".tmp"):
                shutil.rmtree(os.path.join(out, name), ignore_errors=True)
        tmp = tempfile.mkdtemp(prefix="final.", suffix=".tmp", dir=out)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        trainer.state.save_to_json(os.path.join(tmp, "trainer_state.json"))
        provenance.write(tmp, record)
        old = None
        if os.path.isdir(final):
            old = final + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(final, old)
        os.replace(tmp, final)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    return final


def _rng_state_types():
    """numpy types inside Trainer's rng_state.pth, so torch>=2.6's safe loader can resume."""
    import numpy as np

    return [np.core.multiarray._reconstruct, np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def train_and_save(trainer, model, tokenizer, cfg, stage, record):
    """Train (resuming from the newest complete checkpoint) and save `final/`. Returns its path."""
    resume = ranks.broadcast_from_main(latest_checkpoint(stage_dir(cfg, stage)))  # the same
    if resume and trainer.args.should_save:
        print(f"[{stage}] resuming from {resume}", flush=True)
    with torch.serialization.safe_globals(_rng_state_types()):
        trainer.train(resume_from_checkpoint=resume)
    return save_final(trainer, model, tokenizer, cfg, stage, record)


def stage_commands(stage, prepare, make_trainer):
    """A stage module's entry points: `run(cfg)` (the whole stage through `run_stage`; returns the
    path of `<run_dir>/<stage>/final`) and `main(argv)` (settings from `--config` and flags, then
    `run`)."""

    def run(cfg):
        return run_stage(cfg, stage, prepare, make_trainer)

    def main(argv=None):
        return run(parse_stage_args(stage, argv))

    return run, main


def _stage_state(out, final, record):
    """(whether `final/` is up to date, why the stage folder must be moved aside: [] if not)."""
    if not provenance.differences(provenance.read(final), record):
        return True, []
    if not (os.path.isdir(out) and os.listdir(out)):
        return False, []
    return False, provenance.differences(provenance.read(out), record)


def run_stage(cfg, stage, prepare, make_stage_trainer):
    """A stage's whole run. Nothing when `final/` was made from what this run would use (same
    input model content, data and settings). Otherwise the stage folder, if made from something
    else, is moved aside (`<stage>.old-<time>/`, reasons printed); then `prepare(cfg)` ->
    (tokenizer, dataset, stats), settings, statistics and provenance are saved,
    `make_stage_trainer(cfg, tokenizer, dataset)` -> (trainer, model), and training resumes
    from the newest complete checkpoint and saves `final/`. Returns its path."""
    model_dir = input_model(cfg, stage)
    check_model_folder(model_dir)
    record = provenance.stage_record(cfg, stage, model_dir)
    out, final = stage_dir(cfg, stage), final_dir(cfg, stage)
    # Rank 0 decides for all: another rank looking at the folder while rank 0 writes into it
    # could decide otherwise, and the processes would wait for each other forever.
    done, why = ranks.broadcast_from_main(
        _stage_state(out, final, record) if ranks.is_main_process() else None)
    if done:
        if ranks.is_main_process():
            print(f"[{stage}] {final} is complete and up to date; nothing to do", flush=True)
        return final
    if why and ranks.is_main_process():
        moved = provenance.move_aside(out)
        print(f"[{stage}] redoing: {'; '.join(why)}; the old outputs are in {moved}", flush=True)
    ranks.barrier()  # the old folder is out of the way before any process goes on
    tokenizer, dataset, stats = prepare(cfg)
    save_run_info(cfg, stage, stats, record)
    trainer, model = make_stage_trainer(cfg, tokenizer, dataset)
    return train_and_save(trainer, model, tokenizer, cfg, stage, record)
