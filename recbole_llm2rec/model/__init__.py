from recbole_llm2rec import compat  # noqa: F401  (RecBole fixes, before any model is built)
from recbole_llm2rec.model.llmsrec import LLMSRec
from recbole_llm2rec.model.text_gru4rec import TextGRU4Rec
from recbole_llm2rec.model.text_sasrec import TextSASRec

__all__ = ["TextSASRec", "TextGRU4Rec", "LLMSRec"]
