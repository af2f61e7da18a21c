"""Serving a trained model: the exported bundle (`bundle`), the model rebuilt from it
(`model`), top-k search (`index`), titles embedded as the `.feat` was (`embedder`), the
`Recommender` API (`recommender`) and the HTTP endpoint (`app`).

Light to import: torch, RecBole and faiss load with `Recommender`, transformers with the
first titles embedded."""


def __getattr__(name):
    if name == "Recommender":
        from recbole_llm2rec.serving.recommender import Recommender

        return Recommender
    raise AttributeError(f"module 'recbole_llm2rec.serving' has no attribute {name!r}")
