"""IC (item-level contrastive, unsupervised SimCSE) on item titles with a bidirectional LLM.

Each title goes through the model twice with attention dropout on (two views), is mean-pooled,
and the in-batch softmax over cosine similarities / temperature pulls the two views together.
Starts from `<run_dir>/mntp/final`.

    python -m pretrain.ic --run_dir runs/x --datasets Games Electronics --data_path dataset/
"""
import torch
import torch.nn.functional as F

from pretrain import ranks, training
from pretrain.batching import KeyedDataset
from pretrain.encoder_pooling import pool
from pretrain.mntp import title_dataset
from pretrain.stage_config import ConfigError
from recbole_llm2rec.errors import cli_main

STAGE = "ic"


def contrastive_loss(a, b, temperature, offset=0):
    """In-batch InfoNCE: row i of `a` [B, H] should match row offset+i of `b` [N, H] among all
    rows of `b` by cosine similarity / temperature. Returns a scalar."""
    scores = F.normalize(a, dim=-1) @ F.normalize(b, dim=-1).T / temperature
    labels = torch.arange(a.shape[0], device=a.device) + offset
    return F.cross_entropy(scores, labels)


def gather_views(b):
    """Second views of all processes [N, H] and this process's row offset, differentiable:
    the loss and the gradients are those of one process on the concatenated batch
    (`pretrain.ranks.gather_rows`); just (b, 0) in a single process."""
    return ranks.gather_rows(b)


def embed_views(model, input_ids, attention_mask):
    """Mean-pooled embeddings of two dropout views of each input. Returns ([B, H], [B, H])."""
    mask = torch.cat([attention_mask, attention_mask])
    hidden = model(input_ids=torch.cat([input_ids, input_ids]), attention_mask=mask)[0]
    return pool(hidden, mask, "mean").chunk(2)


def make_trainer_class():
    """Trainer whose loss is the contrastive loss over two views (defined lazily: HF import)."""
    class ICTrainer(training.stage_trainer_class()):
        """HF Trainer with the IC loss (`pretrain.steps.contrastive_step`); `temperature` is
        set on the instance."""

        temperature = 0.2
        contrastive = True

        def embed(self, model, inputs):
            return embed_views(model, inputs["input_ids"], inputs["attention_mask"])

        def pair_loss(self, a, b):
            others, offset = gather_views(b)
            return contrastive_loss(a, others, self.temperature, offset)

    return ICTrainer


def prepare(cfg):
    """Check inputs, read and tokenise titles. Returns (tokenizer, dataset, stats)."""
    model_dir = training.input_model(cfg, STAGE)
    tokenizer = training.load_tokenizer(model_dir)
    features, stats = title_dataset(cfg, model_dir, tokenizer)
    if len(features) < cfg.batch_size:
        raise ConfigError(f"ic: more than the {len(features)} titles", field="batch_size",
                          value=cfg.batch_size)
    return tokenizer, KeyedDataset(features), stats


def make_trainer(cfg, tokenizer, dataset):
    """The bidirectional encoder with attention dropout and its Trainer. Returns (trainer, model)."""
    from transformers import DataCollatorWithPadding

    from pretrain.models import load_backbone

    model = load_backbone(training.input_model(cfg, STAGE), bidirectional=True,
                          attn_implementation=training.attn_implementation(cfg),
                          torch_dtype=training.model_dtype(cfg),
                          # attention-probability dropout: Qwen2's only dropout (Llama's too)
                          config_overrides={"attention_dropout": cfg.attention_dropout})
    trainer, model = training.make_trainer(
        cfg, STAGE, model, tokenizer, dataset,
        DataCollatorWithPadding(tokenizer, pad_to_multiple_of=8), make_trainer_class())
    trainer.temperature = cfg.temperature
    return trainer, model


# run(cfg) -> <run_dir>/ic/final; main(argv): settings from --config and flags, then run.
run, main = training.stage_commands(STAGE, prepare, make_trainer)


if __name__ == "__main__":
    cli_main(main, f"python -m pretrain.{STAGE}")
