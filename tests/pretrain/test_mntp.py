"""MNTP: mask token checks, the masking collator (fraction, 80/10/10, shift), loss going down."""
import pytest
import torch
import torch.nn.functional as F

from pretrain import mntp
from pretrain.models import BackboneError, load_backbone
from pretrain.sequences import training_titles
from pretrain.stage_config import ConfigError


def run_args(model, run_dir, data, *extra):
    """Arguments of a tiny MNTP run on the Games slice."""
    return ["--model", model, "--run_dir", str(run_dir), "--datasets", "Games", "--data_path",
            data, "--max_length", "32", "--batch_size", "8", "--micro_batch_size", "8",
            "--learning_rate", "3e-3", "--logging_steps", "1", "--report_to", "none", *extra]


def test_mask_token_must_exist(tiny_tokenizer):
    assert mntp.mask_token_id(tiny_tokenizer, "_") == tiny_tokenizer.convert_tokens_to_ids("_")
    with pytest.raises(ConfigError, match=r"tokenizer: field 'mask_token' = '\[MASK\]': this "
                                          r"mask token is not in the vocabulary"):
        mntp.mask_token_id(tiny_tokenizer, "[MASK]")


def test_collator_masks_20_percent_80_10_10(tiny_tokenizer, games):
    titles = training_titles(games, "Games")
    features = mntp.title_features(tiny_tokenizer, titles, max_length=64) * 4
    mask_id = mntp.mask_token_id(tiny_tokenizer, "_")
    collate = mntp.MNTPCollator(tiny_tokenizer, mask_id, 0.2, seed=0)
    batch = collate(features)
    ids, _ = collate.pad(features)
    labels, inputs, attn = batch["labels"], batch["input_ids"], batch["attention_mask"]
    selected = labels != -100
    candidates = attn.bool().clone()
    candidates[:, 0] = False
    n_cand, n_sel = candidates.sum().item(), selected.sum().item()
    assert n_cand > 5000
    assert not (selected & ~candidates).any()  # never padding, never position 0
    assert abs(n_sel / n_cand - 0.2) < 0.02
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])
    as_mask = (inputs[selected] == mask_id).float().mean().item()
    kept = (inputs[selected] == ids[selected]).float().mean().item()
    assert abs(as_mask - 0.8) < 0.03 and abs(kept - 0.1) < 0.03
    assert abs(1 - as_mask - kept - 0.1) < 0.03  # random replacements
    # Same seed, same masks: the seed and each title's draw drive all randomness.
    again = mntp.MNTPCollator(tiny_tokenizer, mask_id, 0.2, seed=0)(features)
    assert torch.equal(again["input_ids"], inputs)
    other = mntp.MNTPCollator(tiny_tokenizer, mask_id, 0.2, seed=1)(features)
    assert not torch.equal(other["input_ids"], inputs)


def test_a_titles_masks_do_not_depend_on_its_batch(tiny_tokenizer, games):
    # What two processes (or two micro-batches) see must equal what one process sees.
    features = [dict(f, draw=100 + i) for i, f in enumerate(
        mntp.title_features(tiny_tokenizer, training_titles(games, "Games")[:8], 64))]
    collate = mntp.MNTPCollator(tiny_tokenizer, mntp.mask_token_id(tiny_tokenizer, "_"), 0.5)
    whole = collate(features)
    for part in (features[:3], features[3:]):
        alone = collate(part)
        rows = [features.index(f) for f in part]
        width = alone["input_ids"].shape[1]
        for key in ("input_ids", "labels"):
            assert torch.equal(alone[key], whole[key][rows, :width])
    moved = collate([dict(features[0], draw=7)] + features[1:])  # another draw, other masks
    assert not torch.equal(moved["labels"][0], whole["labels"][0])


def test_loss_predicts_token_i_from_position_i_minus_1(tiny_qwen2_dir, tiny_tokenizer, games):
    features = mntp.title_features(tiny_tokenizer, training_titles(games, "Games")[:6], 32)
    batch = mntp.MNTPCollator(tiny_tokenizer, mntp.mask_token_id(tiny_tokenizer, "_"), 0.3,
                              seed=1)(features)
    model = load_backbone(tiny_qwen2_dir, bidirectional=True, lm_head=True,
                          attn_implementation="eager").eval()
    with torch.no_grad():
        out = model(**batch)
    rows, cols = torch.nonzero(batch["labels"] != -100, as_tuple=True)
    assert (cols > 0).all()
    by_hand = F.cross_entropy(out.logits[rows, cols - 1], batch["labels"][rows, cols])
    assert torch.allclose(out.loss, by_hand, atol=1e-5)


def test_loss_goes_down(tiny_llama_dir, games, tmp_path):
    import json

    final = mntp.main(run_args(tiny_llama_dir, tmp_path, games, "--max_steps", "8"))
    state = json.load(open(f"{final}/trainer_state.json"))
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 8 and sum(losses[-2:]) < sum(losses[:2])
    # The final model loads as a bidirectional encoder for the next stage.
    assert type(load_backbone(final, bidirectional=True)).__name__ == "LlamaBiModel"


def test_unknown_architecture_and_missing_mask_fail_early(tmp_path, games, tiny_qwen2_dir):
    from transformers import MistralConfig, MistralForCausalLM

    from tiny_llm import build_tiny_tokenizer

    tokenizer = build_tiny_tokenizer()
    config = MistralConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                           num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1)
    MistralForCausalLM(config).save_pretrained(tmp_path / "mistral")
    tokenizer.save_pretrained(tmp_path / "mistral")
    with pytest.raises(BackboneError, match="no bidirectional version of architecture 'mistral'"):
        mntp.main(run_args(str(tmp_path / "mistral"), tmp_path / "run", games))
    with pytest.raises(ConfigError, match="mask token"):
        mntp.main(run_args(tiny_qwen2_dir, tmp_path / "run", games, "--mask_token", "<mask>"))
    with pytest.raises(ConfigError, match="model folder not found"):
        mntp.main(["--run_dir", str(tmp_path / "run"), "--datasets", "Games", "--data_path", games])
    assert not (tmp_path / "run" / "mntp").exists()
