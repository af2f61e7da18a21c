"""recbole-llm2rec: LLM2Rec item embeddings for RecBole.

Light to import: `recbole_llm2rec.feat` needs only numpy. The models (and with them RecBole and
the fixes in `compat`) load on first use of `MODELS`, `TextSASRec`, `TextGRU4Rec` or `LLMSRec`
(which imports transformers only when it is built).
"""
__version__ = "0.1.0"


def __getattr__(name):
    if name in ("MODELS", "TextSASRec", "TextGRU4Rec", "LLMSRec"):
        from recbole_llm2rec.model import LLMSRec, TextGRU4Rec, TextSASRec

        models = {cls.__name__: cls for cls in (TextSASRec, TextGRU4Rec, LLMSRec)}
        return {"MODELS": models, **models}[name]
    raise AttributeError(f"module 'recbole_llm2rec' has no attribute {name!r}")
