"""TextSASRec: RecBole's SASRec with its item table replaced by frozen text embeddings + adapter."""
from recbole.model.sequential_recommender.sasrec import SASRec

from recbole_llm2rec.model.layers import TextTableModel


class TextSASRec(TextTableModel, SASRec):
    """SASRec whose input and output item embeddings are `adapter(frozen .feat row)` (`item_repr`)."""
