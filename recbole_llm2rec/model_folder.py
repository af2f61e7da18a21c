"""What a local Hugging Face model folder must hold to be loaded: one check for every stage
that reads one (`pretrain.extract`, the `pretrain` training stages, `LLMSRec`'s LLM)."""
import os

from recbole_llm2rec.errors import InputError

CONFIG_FILE = "config.json"
# One of these is the tokenizer's vocabulary (fast tokenizers, SentencePiece, BPE, WordPiece).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt",
                   "spiece.model", "sentencepiece.bpe.model")


def has_weights(files):
    """Whether the file names `files` include model weights (safetensors or a torch .bin,
    whole or sharded)."""
    return any(f.endswith(".safetensors") or f.endswith(".safetensors.index.json")
               or (f.startswith("pytorch_model") and f.endswith((".bin", ".bin.index.json")))
               for f in files)


def check_model_folder(path, error=InputError, weights=False, not_found="model folder not found"):
    """Raise `error` naming `path` unless it is a folder with a `config.json` and a tokenizer
    (and, with `weights`, model weights); `not_found` is the message for a missing folder."""
    if not os.path.isdir(path):
        raise error(not_found, path=path)
    files = set(os.listdir(path))
    if CONFIG_FILE not in files:
        raise error(f"not a Hugging Face model folder (no {CONFIG_FILE})", path=path)
    if weights and not has_weights(files):
        raise error("no model weights (*.safetensors or pytorch_model*.bin)", path=path)
    if not files & set(TOKENIZER_FILES):
        raise error(f"model folder has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                    f"save it beside the weights", path=path)
    return path
