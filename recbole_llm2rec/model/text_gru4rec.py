"""TextGRU4Rec: RecBole's GRU4Rec with its item table replaced by frozen text embeddings + adapter."""
from recbole.model.sequential_recommender.gru4rec import GRU4Rec

from recbole_llm2rec.model.layers import use_text_item_table


class TextGRU4Rec(GRU4Rec):
    """GRU4Rec whose input and output item embeddings are `adapter(frozen .feat row)` (`item_repr`)."""

    uses_text_emb = True  # reads <dataset>.<text_emb>.feat (run_recbole.py builds the default)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        use_text_item_table(self, config, dataset)

    def optimizer_param_groups(self):
        """Parameter groups for the plugin's trainers (None: one group, as RecBole does)."""
        return self.item_embedding.param_groups(self)
