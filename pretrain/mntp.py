"""MNTP: masked next-token prediction with bidirectional attention on single item titles.

A fraction of each title's tokens is selected (80% replaced by the mask token, 10% by a random
token, 10% kept); the causal-LM head predicts selected token i from position i-1's output
(the model's usual shifted loss), as llm2vec does. Starts from `<run_dir>/csft/final`.

    python -m pretrain.mntp --run_dir runs/x --datasets Games Electronics --data_path dataset/
"""
import random

import torch

from pretrain import training
from pretrain.batching import DRAW, KeyedDataset, draw_generator
from pretrain.sequences import training_titles
from pretrain.stage_config import ConfigError
from recbole_llm2rec.errors import cli_main

STAGE = "mntp"
IGNORE = -100


def mask_token_id(tokenizer, mask_token, where="tokenizer"):
    """Id of `mask_token`, which must already be one vocabulary entry; ConfigError if not."""
    token_id = tokenizer.convert_tokens_to_ids(mask_token)
    if token_id is None or (token_id == tokenizer.unk_token_id and mask_token != tokenizer.unk_token):
        raise ConfigError("this mask token is not in the vocabulary; set mask_token to an "
                          "existing token (e.g. '_' for Qwen2)", path=where, field="mask_token",
                          value=mask_token)
    return token_id


class MNTPCollator:
    """Pads titles (right) and masks them. Returns {input_ids, attention_mask, labels} [B, L];
    labels hold the original token at selected positions, -100 elsewhere (unshifted). Each
    title's masks are drawn from `seed` and its `draw` (`pretrain.batching`; its row number
    when absent), so they do not depend on the batch it is in."""

    uses_draw = True

    def __init__(self, tokenizer, mask_id, mlm_probability=0.2, pad_to_multiple_of=8, seed=0):
        self.pad_id = tokenizer.pad_token_id
        self.mask_id = mask_id
        self.vocab_size = len(tokenizer)
        self.special_ids = torch.tensor(sorted(set(tokenizer.all_special_ids)))
        self.probability = mlm_probability
        self.multiple = pad_to_multiple_of
        self.seed = seed

    def pad(self, features):
        """Right-padded input_ids and attention_mask [B, L]."""
        longest = max(len(f["input_ids"]) for f in features)
        if self.multiple:
            longest = -(-longest // self.multiple) * self.multiple
        ids = torch.full((len(features), longest), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(features), longest), dtype=torch.long)
        for row, f in enumerate(features):
            ids[row, :len(f["input_ids"])] = torch.tensor(f["input_ids"])
            mask[row, :len(f["input_ids"])] = 1
        return ids, mask

    def mask_one(self, ids, draw):
        """(inputs, labels) of one title's token ids [n], masked from its own generator."""
        gen = draw_generator(self.seed, draw)
        n = len(ids)
        # Candidates: non-special tokens; never position 0, which has no i-1 to predict it.
        candidates = ~torch.isin(ids, self.special_ids)
        candidates[0] = False
        selected = candidates & (torch.rand(n, generator=gen) < self.probability)
        action = torch.rand(n, generator=gen)
        random_ids = torch.randint(self.vocab_size, (n,), generator=gen)
        inputs = torch.where(selected & (action < 0.8), self.mask_id, ids)
        randomized = selected & (action >= 0.8) & (action < 0.9)
        inputs = torch.where(randomized, random_ids, inputs)
        return inputs, torch.where(selected, ids, IGNORE)

    def __call__(self, features):
        ids, attention_mask = self.pad(features)
        labels = torch.full_like(ids, IGNORE)
        inputs = ids.clone()
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            inputs[row, :n], labels[row, :n] = self.mask_one(ids[row, :n],
                                                             f.get(DRAW, row))
        return {"input_ids": inputs, "attention_mask": attention_mask, "labels": labels}


def title_features(tokenizer, titles, max_length):
    """Tokenised titles (with the model's usual special tokens), cut to `max_length`."""
    ids = tokenizer(titles, truncation=True, max_length=max_length)["input_ids"]
    return [{"input_ids": x} for x in ids]


def load_titles(cfg):
    """Distinct item titles of all `cfg.datasets`, subsampled to `max_examples`. Returns (titles, stats)."""
    titles, stats = [], {"datasets": {}}
    for name in cfg.datasets:
        ds_titles = training_titles(cfg.data_path, name, cfg.title_field)
        titles.extend(ds_titles)
        stats["datasets"][name] = {"titles": len(ds_titles)}
    titles = list(dict.fromkeys(titles))
    if cfg.max_examples and cfg.max_examples < len(titles):
        titles = random.Random(cfg.seed).sample(titles, cfg.max_examples)
    stats["examples"] = len(titles)
    return titles, stats


def check_backbone(model_dir):
    """Fail early when `model_dir` has no bidirectional version. Returns its HF config."""
    from transformers import AutoConfig

    from pretrain.models import bidirectional_classes

    config = AutoConfig.from_pretrained(model_dir)
    bidirectional_classes(config, where=model_dir)
    return config


def title_dataset(cfg, model_dir, tokenizer):
    """The data of the title stages (MNTP, IC): check that the backbone has a bidirectional
    version, then read and tokenise the titles. Returns (features, stats)."""
    check_backbone(model_dir)
    titles, stats = load_titles(cfg)
    features = title_features(tokenizer, titles, cfg.max_length)
    lengths = [len(f["input_ids"]) for f in features]
    stats.update(model=model_dir, tokens=sum(lengths), max_length=max(lengths),
                 mean_length=sum(lengths) / len(lengths))
    return features, stats


def prepare(cfg):
    """Check inputs, read and tokenise titles. Returns (tokenizer, dataset, stats)."""
    model_dir = training.input_model(cfg, STAGE)
    tokenizer = training.load_tokenizer(model_dir)
    mask_token_id(tokenizer, cfg.mask_token, where=model_dir)  # fail before any tokenising
    features, stats = title_dataset(cfg, model_dir, tokenizer)
    return tokenizer, KeyedDataset(features), stats


def make_trainer(cfg, tokenizer, dataset):
    """The bidirectional LM-head model and its Trainer. Returns (trainer, model)."""
    from pretrain.models import load_backbone

    model_dir = training.input_model(cfg, STAGE)
    mask_id = mask_token_id(tokenizer, cfg.mask_token, where=model_dir)
    model = load_backbone(model_dir, bidirectional=True, lm_head=True,
                          attn_implementation=training.attn_implementation(cfg),
                          torch_dtype=training.model_dtype(cfg))
    return training.make_trainer(cfg, STAGE, model, tokenizer, dataset,
                                 MNTPCollator(tokenizer, mask_id, cfg.mlm_probability,
                                              seed=cfg.seed))


# run(cfg) -> <run_dir>/mntp/final; main(argv): settings from --config and flags, then run.
run, main = training.stage_commands(STAGE, prepare, make_trainer)


if __name__ == "__main__":
    cli_main(main, f"python -m pretrain.{STAGE}")
