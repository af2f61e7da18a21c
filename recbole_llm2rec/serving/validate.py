"""Checks of what a caller hands the recommender (Python API and HTTP alike): each bad value is
an InputError naming the field and the value."""
from recbole_llm2rec.errors import InputError

MAX_TITLE_CHARS = 2000


def check_tokens(tokens, field):
    """`tokens` as a list of distinct, non-empty item tokens without tabs or line breaks."""
    if isinstance(tokens, str) or not isinstance(tokens, (list, tuple)) or not tokens:
        raise InputError("must be a non-empty list of item tokens", field=field,
                         value=_short(tokens))
    seen = set()
    for i, token in enumerate(tokens):
        if not isinstance(token, str) or not token.strip() or any(c in token for c in "\t\r\n"):
            raise InputError("must be a non-empty item token without tabs or line breaks",
                             field=f"{field}[{i}]", value=_short(token))
        if token in seen:
            raise InputError("given twice", field=f"{field}[{i}]", value=token)
        seen.add(token)
    return list(tokens)


def check_new_items(tokens, titles):
    """(tokens, titles) of items to add: distinct tokens, one non-empty title each."""
    tokens = check_tokens(tokens, "items")
    if isinstance(titles, str) or not isinstance(titles, (list, tuple)):
        raise InputError("must be a list of titles, one per item", field="titles",
                         value=_short(titles))
    if len(titles) != len(tokens):
        raise InputError(f"{len(titles)} titles for {len(tokens)} items", field="titles",
                         value=len(titles))
    for i, title in enumerate(titles):
        if not isinstance(title, str) or not title.strip() or len(title) > MAX_TITLE_CHARS:
            raise InputError(f"must be a non-empty text of at most {MAX_TITLE_CHARS} "
                             f"characters", field=f"titles[{i}]", value=_short(title))
    return tokens, list(titles)


def check_history(history):
    """(list of histories, single?) for one history (list of tokens) or a batch of them."""
    if isinstance(history, (list, tuple)) and history and all(
            isinstance(h, (list, tuple)) for h in history):
        for i, h in enumerate(history):
            _check_one(h, f"history[{i}]")
        return [list(h) for h in history], False
    _check_one(history, "history")
    return [list(history)], True


def _check_one(history, field):
    if isinstance(history, str) or not isinstance(history, (list, tuple)):
        raise InputError("must be a list of item tokens (or a list of such lists)",
                         field=field, value=_short(history))
    if not history:
        raise InputError("empty history", field=field, value=[])
    for i, token in enumerate(history):
        if not isinstance(token, str):
            raise InputError("must be an item token (a string)", field=f"{field}[{i}]",
                             value=_short(token))


def check_k(k, size):
    """`k` as an int in 1..size (the catalogue)."""
    if isinstance(k, bool) or not isinstance(k, int):
        raise InputError("must be an integer", field="k", value=_short(k))
    if k < 1 or k > size:
        raise InputError(f"must be between 1 and the catalogue size ({size})", field="k",
                         value=k)
    return k


def _short(value):
    """`value` for a message: long texts and lists cut."""
    if isinstance(value, str) and len(value) > 80:
        return value[:77] + "..."
    if isinstance(value, (list, tuple)) and len(value) > 10:
        return list(value[:10]) + ["..."]
    return value
