"""Titles embedded exactly as the bundle's `.feat` was made: the embedder and settings its
sidecar records (model, attention, pooling, max length, normalisation, dtype), through
`pretrain.extract`'s own loading and embedding code.

Serving is downstream of both extraction and training, so this module (and only it in
`recbole_llm2rec`) imports `pretrain`: lazily, when the first titles are embedded.
"""
import os

from recbole_llm2rec.errors import InputError


class TitleEmbedder:
    """Embeds titles with the embedder a `.feat` sidecar records; the model loads on first use.
    `check()` says in one line why it cannot (no sidecar, a prompt other than the title, the
    model folder gone or changed)."""

    def __init__(self, sidecar, what="bundle"):
        self.sidecar, self.what = sidecar or {}, what
        self._loaded = None

    def describe(self):
        """The embedder and settings, for /health."""
        keys = ("backbone", "model_type", "attention", "pooling", "max_length", "normalized",
                "dtype", "prompt", "title_field")
        return {k: self.sidecar.get(k) for k in keys if k in self.sidecar}

    def check(self):
        """Raise InputError unless titles can be embedded as the `.feat` was."""
        meta = self.sidecar
        backbone = meta.get("backbone")
        if not backbone or "pooling" not in meta:
            raise InputError(f"the {self.what}'s .feat sidecar records no embedder (backbone "
                             f"and pooling), so new titles cannot be embedded as its table was",
                             field="backbone", value=backbone)
        if meta.get("prompt"):
            raise InputError("the table embeds LLMEmb attribute prompts, not titles; adding "
                             "items by title is not supported for it", field="prompt",
                             value=meta["prompt"])
        from pretrain.extract import resolve_model

        try:
            path = resolve_model(backbone)
        except InputError as err:
            raise InputError(f"the embedder the .feat was made with cannot be found (a local "
                             f"model folder that moved, or a package not installed): "
                             f"{err.message}", field="backbone", value=backbone) from None
        recorded = meta.get("model_fingerprint")
        if recorded and os.path.isdir(path):
            from pretrain.provenance import fingerprint

            if fingerprint(path) != recorded:
                raise InputError("the embedder's model folder has changed since the .feat was "
                                 "made (its fingerprint differs)", field="backbone",
                                 value=backbone)
        return path

    def embed(self, titles):
        """float32 [len(titles), D] rows for `titles`, as the `.feat` rows were made."""
        from pretrain.extract import embed_texts

        net, tokenizer = self._model()
        meta = self.sidecar
        batch = (meta.get("extraction") or {}).get("batch_tokens") or 512
        rows, _ = embed_texts(net, tokenizer, [normalize_title(t) for t in titles],
                              meta["pooling"], batch, meta.get("max_length") or 512,
                              desc="embed titles", normalize=bool(meta.get("normalized")))
        return rows

    def _model(self):
        if self._loaded is None:
            from pretrain.extract import load_encoder

            self.check()
            meta = self.sidecar
            attention = meta.get("attention")
            net, tokenizer, _ = load_encoder(
                meta["backbone"], None if attention == "encoder" else attention,
                meta.get("dtype") or "float32", "cpu", meta.get("attn_implementation"))
            self._loaded = (net, tokenizer)
        return self._loaded


def normalize_title(title):
    """A title as the `.item` reader hands it to extraction: whitespace runs collapsed."""
    return " ".join(str(title).split())
