"""IC (SimCSE): hand-computed loss, two dropout views, loss going down."""
import json
import math

import pytest
import torch

from pretrain import ic
from pretrain.models import load_backbone


def test_loss_equals_hand_computed_value():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    b = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 0.0]])
    # Cosines: a0 vs b = (1, 0, 1); a1 vs b = (0, 1, 0); a2 vs b = (r, r, r), r = 1/sqrt(2).
    # Scores are cosines / 0.5; loss_i = -score_ii + log sum_j exp(score_ij).
    loss0 = -2 + math.log(math.exp(2) + 1 + math.exp(2))
    loss1 = -2 + math.log(1 + math.exp(2) + 1)
    loss2 = math.log(3)
    expected = (loss0 + loss1 + loss2) / 3
    assert ic.contrastive_loss(a, b, 0.5).item() == pytest.approx(expected, rel=1e-6)
    # With gathered views from other processes, positives sit at offset + i.
    others = torch.cat([torch.tensor([[5.0, -1.0]]), b])
    shifted = ic.contrastive_loss(a, others, 0.5, offset=1).item()
    extra = [2 * (5 / math.sqrt(26)), 2 * (-1 / math.sqrt(26)), 2 * (4 / math.sqrt(52))]
    by_hand = [-2 + math.log(math.exp(extra[0]) + math.exp(2) + 1 + math.exp(2)),
               -2 + math.log(math.exp(extra[1]) + 1 + math.exp(2) + 1),
               -math.sqrt(2) + math.log(math.exp(extra[2]) + 3 * math.exp(math.sqrt(2)))]
    assert shifted == pytest.approx(sum(by_hand) / 3, rel=1e-6)


def test_dropout_makes_two_different_views(tiny_qwen2_dir, tiny_tokenizer):
    model = load_backbone(tiny_qwen2_dir, bidirectional=True, attn_implementation="eager",
                          config_overrides={"attention_dropout": 0.5})
    assert model.layers[0].self_attn.attention_dropout == 0.5
    batch = tiny_tokenizer(["Super Mario Odyssey", "Xbox One Wireless Controller"],
                           padding=True, return_tensors="pt")
    torch.manual_seed(0)
    a, b = ic.embed_views(model.train(), batch["input_ids"], batch["attention_mask"])
    assert a.shape == (2, model.config.hidden_size) and not torch.allclose(a, b)
    a, b = ic.embed_views(model.eval(), batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(a, b, atol=1e-6)


def tensor_names(folder):
    """Names of the tensors saved in `folder/model.safetensors`."""
    from safetensors import safe_open

    with safe_open(f"{folder}/model.safetensors", "pt") as fh:
        return set(fh.keys())


def test_loss_goes_down_and_only_the_encoder_is_saved(make_tiny_model, games, tmp_path):
    # An untied LM head is a tensor of its own in the input checkpoint: IC's final must be
    # the bare encoder (what extraction loads), without it.
    start = make_tiny_model("llama", tie_word_embeddings=False)
    assert "lm_head.weight" in tensor_names(start)
    final = ic.main(["--model", start, "--run_dir", str(tmp_path), "--datasets",
                     "Games", "--data_path", games, "--max_length", "24", "--batch_size",
                     "8", "--micro_batch_size", "8", "--learning_rate", "3e-3",
                     "--warmup_steps", "0", "--logging_steps", "1", "--report_to", "none",
                     "--max_steps", "6"])
    state = json.load(open(f"{final}/trainer_state.json"))
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 6 and sum(losses[-2:]) < sum(losses[:2])
    config = json.load(open(f"{final}/config.json"))
    names = tensor_names(final)
    assert config["attention_dropout"] == 0.2 and config["tie_word_embeddings"] is False
    assert not any(name.startswith("lm_head") for name in names)
    assert "embed_tokens.weight" in names and "layers.1.mlp.down_proj.weight" in names
    assert type(load_backbone(final, bidirectional=True)).__name__ == "LlamaBiModel"
