"""TextGRU4Rec: RecBole's GRU4Rec with its item table replaced by frozen text embeddings + adapter."""
from recbole.model.sequential_recommender.gru4rec import GRU4Rec

from recbole_llm2rec.model.layers import TextTableModel


class TextGRU4Rec(TextTableModel, GRU4Rec):
    """GRU4Rec whose input and output item embeddings are `adapter(frozen .feat row)` (`item_repr`)."""
