"""Fixtures for the pretrain tests: the tiny random backbones of `tests/tiny_llm.py` and a real
Games slice."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

from tiny_llm import ARCHS, build_tiny_tokenizer, save_tiny_model  # noqa: E402,F401


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """The tiny tokenizer (session-wide; do not mutate)."""
    return build_tiny_tokenizer()


@pytest.fixture(scope="session")
def make_tiny_model(tmp_path_factory):
    """Factory: make_tiny_model(arch, seed=0, **config_overrides) -> folder path (cached)."""
    cache = {}

    def make(arch, seed=0, **config_overrides):
        key = (arch, seed, tuple(sorted(config_overrides.items())))
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"tiny-{arch}")
            cache[key] = save_tiny_model(folder, arch, seed, **config_overrides)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_qwen2_dir(make_tiny_model):
    """Folder of a tiny random Qwen2ForCausalLM with its tokenizer."""
    return make_tiny_model("qwen2")


@pytest.fixture(scope="session")
def tiny_llama_dir(make_tiny_model):
    """Folder of a tiny random LlamaForCausalLM with its tokenizer."""
    return make_tiny_model("llama")


@pytest.fixture(scope="session", params=ARCHS)
def tiny_llm_dir(request, make_tiny_model):
    """Folder of each tiny architecture in turn (parametrized over ARCHS)."""
    return make_tiny_model(request.param)


@pytest.fixture(scope="module")
def games(tmp_path_factory):
    """Folder with a 12-user slice of the real Games dataset (the stage tests' data)."""
    from slices import write_slice

    return write_slice(tmp_path_factory.mktemp("data"), "Games", 12)
