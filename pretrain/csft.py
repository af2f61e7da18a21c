"""CSFT: collaborative supervised fine-tuning of a causal LLM on next-item title prediction.

Input: the titles of a user's up-to-10 previous items joined by ", " (no template); output: the
next item's title + "\\n" + EOS. Input and output are tokenised separately and concatenated;
the loss covers the output tokens only. Each user's last two items are never used.

    python -m pretrain.csft --model models/SmolLM2-135M-Instruct --run_dir runs/x \\
        --datasets Games Electronics --data_path dataset/ --max_steps 200
"""
import random

from tqdm.auto import tqdm

from pretrain import training
from pretrain.batching import KeyedDataset
from pretrain.sequences import csft_examples
from recbole_llm2rec.errors import cli_main

STAGE = "csft"
IGNORE = -100


def join_example(prompt_ids, output_ids, eos_id, max_length):
    """One example: input ids, then output ids + EOS, cut from the left to `max_length`;
    labels are -100 over the input part. Returns {input_ids, labels}."""
    output_ids = list(output_ids) + [eos_id]
    ids = (list(prompt_ids) + output_ids)[-max_length:]
    n_out = min(len(output_ids), len(ids))
    return {"input_ids": ids, "labels": [IGNORE] * (len(ids) - n_out) + ids[-n_out:]}


def build_features(tokenizer, pairs, max_length):
    """Tokenise (input text, output text) pairs. Returns a list of {input_ids, labels}."""
    features = []
    chunk = 2048
    for start in tqdm(range(0, len(pairs), chunk), desc="csft: tokenising", unit="chunk"):
        block = pairs[start:start + chunk]
        prompts = tokenizer([p for p, _ in block])["input_ids"]
        outputs = tokenizer([o + "\n" for _, o in block], add_special_tokens=False)["input_ids"]
        features.extend(join_example(p, o, tokenizer.eos_token_id, max_length)
                        for p, o in zip(prompts, outputs))
    return features


def load_examples(cfg):
    """Mixed CSFT (input, output) pairs of all `cfg.datasets`, subsampled to `max_examples`.
    Returns (pairs, stats)."""
    pairs, stats = [], {"datasets": {}}
    for name in cfg.datasets:
        examples, ds_stats = csft_examples(cfg.data_path, name, cfg.max_history, cfg.title_field)
        pairs.extend(examples)
        stats["datasets"][name] = ds_stats
    if cfg.max_examples and cfg.max_examples < len(pairs):
        pairs = random.Random(cfg.seed).sample(pairs, cfg.max_examples)
    stats["examples"] = len(pairs)
    return pairs, stats


def token_stats(features, max_length):
    """Length statistics of tokenised examples (for data_stats.json)."""
    lengths = [len(f["input_ids"]) for f in features]
    targets = [sum(t != IGNORE for t in f["labels"]) for f in features]
    return {"tokens": sum(lengths), "target_tokens": sum(targets),
            "mean_length": sum(lengths) / len(lengths), "max_length": max(lengths),
            "truncated": sum(n == max_length for n in lengths)}


def collator(tokenizer):
    """Pads to the longest example of the batch (labels with -100). Returns a callable."""
    from transformers import DataCollatorForSeq2Seq

    return DataCollatorForSeq2Seq(tokenizer, padding=True, pad_to_multiple_of=8,
                                  label_pad_token_id=IGNORE, return_tensors="pt")


def prepare(cfg):
    """Check inputs, read and tokenise the data. Returns (tokenizer, dataset, stats)."""
    model_dir = training.input_model(cfg, STAGE)
    tokenizer = training.load_tokenizer(model_dir)
    pairs, stats = load_examples(cfg)
    features = build_features(tokenizer, pairs, cfg.max_length)
    stats.update(token_stats(features, cfg.max_length), model=model_dir)
    return tokenizer, KeyedDataset(features), stats


def make_trainer(cfg, tokenizer, dataset):
    """The causal LM (LoRA when `lora_r`) and its HF Trainer. Returns (trainer, model)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        training.input_model(cfg, STAGE), torch_dtype=training.model_dtype(cfg),
        attn_implementation=training.attn_implementation(cfg))
    return training.make_trainer(cfg, STAGE, model, tokenizer, dataset, collator(tokenizer))


# run(cfg) -> <run_dir>/csft/final; main(argv): settings from --config and flags, then run.
run, main = training.stage_commands(STAGE, prepare, make_trainer)


if __name__ == "__main__":
    cli_main(main, f"python -m pretrain.{STAGE}")
