"""SCFT (LLMEmb's supervised contrastive fine-tuning) on item attribute prompts.

Each item is written as "The item has the following attributes: \\n title is ...; <attr> is ..."
from the text columns of its `.item` file. Two views of every item drop a random `drop_ratio`
of its attributes (of its title's words when the title is its only attribute); the backbone,
with its own causal attention, mean-pools each prompt over all its tokens, and a symmetric
in-batch contrastive loss (InfoNCE both ways, cosine similarity over a trainable temperature)
pulls the two views of an item together. LoRA by default. Starts from the backbone.

    python -m pretrain.scft --run_dir runs/x --model models/SmolLM2-135M-Instruct \\
        --datasets Games --data_path dataset/
"""
import json
import math
import os
import random

import torch

from pretrain import training
from pretrain.batching import DRAW, KeyedDataset, draw_rng
from pretrain.common import dataset_file, item_prompt, read_item_attributes
from pretrain.encoder_pooling import pool
from pretrain.ic import contrastive_loss, gather_views
from pretrain.stage_config import ConfigError
from recbole_llm2rec.errors import cli_main

STAGE = "scft"
TEMPERATURE_FILE = "scft_temperature.json"  # the learned temperature inside each checkpoint


def _keep(n, ratio, rng):
    """Sorted indices of the `n - int(n * ratio)` parts kept (at least one)."""
    drop = min(int(n * ratio), n - 1)
    return sorted(rng.sample(range(n), n - drop))


def drop_view(attributes, ratio, rng):
    """One augmented view: `int(K * ratio)` of the K attributes dropped at random (order kept),
    or, for an item whose title is its only attribute, that ratio of the title's words. Never
    empty: at least one attribute (word) stays. Returns [(name, value), ...]."""
    if len(attributes) > 1:
        return [attributes[i] for i in _keep(len(attributes), ratio, rng)]
    name, value = attributes[0]
    words = value.split()
    return [(name, " ".join(words[i] for i in _keep(len(words), ratio, rng)))]


class SCFTCollator:
    """Builds two dropped views of each item at batching time and tokenises them (right
    padding). Returns {input_ids, attention_mask} [2B, L]: all first views, then all second.
    An item's views are drawn from `seed` and its `draw` (`pretrain.batching`; its row number
    when absent), so they do not depend on the batch it is in."""

    uses_draw = True

    def __init__(self, tokenizer, drop_ratio, max_length, seed=0):
        self.tokenizer, self.ratio, self.max_length = tokenizer, drop_ratio, max_length
        self.seed = seed

    def views(self, features):
        """The 2B prompts of a batch (first views, then second views)."""
        pairs = []
        for row, f in enumerate(features):
            rng = draw_rng(self.seed, f.get(DRAW, row))
            pairs.append([item_prompt(drop_view(f["attributes"], self.ratio, rng))
                          for _ in range(2)])
        return [pair[view] for view in range(2) for pair in pairs]

    def __call__(self, features):
        self.tokenizer.padding_side = "right"  # real tokens keep positions 0..n-1
        batch = self.tokenizer(self.views(features), truncation=True, max_length=self.max_length,
                               padding=True, return_tensors="pt")
        return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def symmetric_contrastive_loss(a, b, temperature):
    """In-batch InfoNCE of view `a` [B, H] against `b` and of `b` against `a` (cosine
    similarity / temperature), averaged. Returns a scalar."""
    others_b, offset = gather_views(b)
    others_a, _ = gather_views(a)
    return (contrastive_loss(a, others_b, temperature, offset)
            + contrastive_loss(b, others_a, temperature, offset)) / 2


def make_trainer_class():
    """Trainer with the SCFT loss and a trainable temperature, which it optimises (no weight
    decay), logs, and saves in / restores from each checkpoint. Defined lazily: HF import."""
    from torch import nn

    class SCFTTrainer(training.stage_trainer_class()):
        """HF Trainer with the SCFT loss; call `set_temperature(t)` before training."""

        log_temperature = None

        def set_temperature(self, value):
            self.log_temperature = nn.Parameter(torch.tensor(math.log(value),
                                                             device=self.args.device))

        def temperature(self):
            return self.log_temperature.exp().clamp(min=1e-2)

        contrastive = True

        def embed(self, model, inputs):
            mask = inputs["attention_mask"]
            hidden = model(input_ids=inputs["input_ids"], attention_mask=mask)[0]
            return pool(hidden, mask, "mean").chunk(2)

        def pair_loss(self, a, b):
            return symmetric_contrastive_loss(a, b, self.temperature())

        def shared_parameters(self):
            return [self.log_temperature]

        def create_optimizer(self):
            optimizer = super().create_optimizer()
            if not any(p is self.log_temperature for g in optimizer.param_groups
                       for p in g["params"]):
                optimizer.add_param_group({"params": [self.log_temperature],
                                           "weight_decay": 0.0})
            return optimizer

        def log(self, logs):
            if "loss" in logs:
                logs["temperature"] = round(self.temperature().item(), 5)
            super().log(logs)

        def _save_optimizer_and_scheduler(self, output_dir):
            super()._save_optimizer_and_scheduler(output_dir)
            if self.args.should_save:
                training.write_json(os.path.join(output_dir, TEMPERATURE_FILE),
                                    {"log_temperature": self.log_temperature.item()})

        def _load_optimizer_and_scheduler(self, checkpoint):
            super()._load_optimizer_and_scheduler(checkpoint)
            path = os.path.join(checkpoint or "", TEMPERATURE_FILE)
            if checkpoint and os.path.isfile(path):
                with open(path, encoding="utf-8") as fh:
                    value = json.load(fh)["log_temperature"]
                with torch.no_grad():
                    self.log_temperature.fill_(value)

    return SCFTTrainer


def load_items(cfg):
    """Distinct item attribute lists of the training datasets (a random `max_examples` subset).
    Says once when every `.item` file holds only a title. Returns ([{attributes}], stats)."""
    items, seen, stats, title_only = [], set(), {}, True
    for name in cfg.datasets:
        _, attributes, columns = read_item_attributes(
            dataset_file(cfg.data_path, name, "item"), cfg.title_field)
        title_only &= len(columns) == 1
        new = [a for a in attributes if item_prompt(a) not in seen]
        seen.update(item_prompt(a) for a in new)
        items += new
        stats[name] = {"items": len(attributes), "distinct_prompts": len(new),
                       "attribute_columns": columns}
    if cfg.max_examples is not None and cfg.max_examples < len(items):
        items = random.Random(cfg.seed).sample(items, cfg.max_examples)
    if title_only:
        print(f"[{STAGE}] the .item files have only a title column: each view drops "
              f"{cfg.drop_ratio:.0%} of the title's words instead of attributes", flush=True)
    stats["examples"] = len(items)
    stats["single_attribute_items"] = sum(len(a) == 1 for a in items)
    return [{"attributes": a} for a in items], stats


def prepare(cfg):
    """Check inputs and read the items. Returns (tokenizer, dataset, stats)."""
    tokenizer = training.load_tokenizer(training.input_model(cfg, STAGE))
    features, stats = load_items(cfg)
    if len(features) < cfg.batch_size:
        raise ConfigError(f"scft: more than the {len(features)} distinct items",
                          field="batch_size", value=cfg.batch_size)
    return tokenizer, KeyedDataset(features), stats


def make_trainer(cfg, tokenizer, dataset):
    """The backbone with its own causal attention, LoRA-wrapped by default, and its Trainer.
    Returns (trainer, model)."""
    from pretrain.models import load_backbone

    model = load_backbone(training.input_model(cfg, STAGE), bidirectional=False,
                          attn_implementation=training.attn_implementation(cfg),
                          torch_dtype=training.model_dtype(cfg))
    collator = SCFTCollator(tokenizer, cfg.drop_ratio, cfg.max_length, cfg.seed)
    trainer, model = training.make_trainer(cfg, STAGE, model, tokenizer, dataset, collator,
                                           make_trainer_class())
    trainer.set_temperature(cfg.temperature)
    return trainer, model


# run(cfg) -> <run_dir>/scft/final; main(argv): settings from --config and flags, then run.
run, main = training.stage_commands(STAGE, prepare, make_trainer)


if __name__ == "__main__":
    cli_main(main, f"python -m pretrain.{STAGE}")
