"""recbole-llm2rec: LLM2Rec item embeddings for RecBole."""
from recbole_llm2rec import compat  # noqa: F401  (RecBole fixes; must run before any training)
from recbole_llm2rec.model import TextGRU4Rec, TextSASRec

MODELS = {cls.__name__: cls for cls in (TextSASRec, TextGRU4Rec)}

__version__ = "0.1.0"
