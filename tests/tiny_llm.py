"""Tiny random decoder-only backbones (Qwen2, Llama) and a tiny byte-level BPE tokenizer,
built in code: no downloads, a few ms to build, seconds to run. Shared by the pretrain tests and
the LLM-based model tests."""
import torch

EOS = "<|endoftext|>"
# Product-title-like text: byte-level BPE covers any string, this only shapes the merges.
CORPUS = [
    "Super Mario Odyssey - Nintendo Switch",
    "The Legend of Zelda: Breath of the Wild",
    "PlayStation 4 Slim 1TB Console - Black",
    "Xbox One Wireless Controller with Bluetooth",
    "Call of Duty: Black Ops III - PlayStation 4 Standard Edition",
    "Turtle Beach Ear Force Recon 50 Gaming Headset for PC, Mac and Mobile",
    "Minecraft (Xbox 360) [game] 2013 edition, 4.5 stars & free shipping!",
    "Neutrogena Hydro Boost Water Gel, 1.7 oz",
    "LEGO City Fire Station 60110 Building Toy",
    "Logitech G502 Proteus Core Tunable Gaming Mouse",
]
ARCHS = ("qwen2", "llama")


def build_tiny_tokenizer(vocab_size=320):
    """Byte-level BPE PreTrainedTokenizerFast, Qwen2-style: EOS = pad, no BOS added."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                   clean_up_tokenization_spaces=False,
                                   model_input_names=["input_ids", "attention_mask"])


def tiny_config(arch, vocab_size, eos_id, **overrides):
    """A 2-layer, hidden-32 Qwen2Config or LlamaConfig (GQA: 4 heads, 2 KV heads)."""
    from transformers import LlamaConfig, Qwen2Config

    kw = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
              bos_token_id=eos_id, eos_token_id=eos_id, pad_token_id=eos_id,
              tie_word_embeddings=True)
    kw.update(overrides)
    return {"qwen2": Qwen2Config, "llama": LlamaConfig}[arch](**kw)


def save_tiny_model(folder, arch, seed=0, **config_overrides):
    """Save a random `<Arch>ForCausalLM` + tokenizer into `folder` (like a real checkpoint)."""
    from transformers import AutoModelForCausalLM

    tokenizer = build_tiny_tokenizer()
    config = tiny_config(arch, len(tokenizer), tokenizer.eos_token_id, **config_overrides)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
