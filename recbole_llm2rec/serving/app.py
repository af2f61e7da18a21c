"""The HTTP endpoint (FastAPI) over a `Recommender`.

    POST   /recommend  {"history": [tokens]} or {"histories": [[tokens], ...]},
                       optional "k" (10), "exclude_seen" (true), "on_unknown" ("error"|"skip")
    POST   /items      {"items": [{"item": token, "title": text}, ...]}
    DELETE /items      {"items": [token, ...]}
    GET    /health     model, catalogue size, index, embedder

Every bad input is a 4xx with a JSON body {"error", "field", "value"}; a body over
`max_body_bytes` is refused (413) before it is parsed. Work runs in the server's thread pool,
so requests are answered while others compute; adds and removals apply whole or not at all.
"""
import json

from recbole_llm2rec.errors import _UNSET, InputError

MAX_BODY_BYTES = 1 << 20
JSON_TYPE = "application/json"


class BodyTooLarge(Exception):
    pass


def error_body(err):
    """The JSON body of an InputError: message, field and value."""
    value = None if err.value is _UNSET else err.value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        value = repr(value)
    return {"error": err.message, "field": err.field, "value": value, "detail": str(err)}


async def read_json(request, max_bytes):
    """The request's JSON object, read at most `max_bytes` bytes far."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise BodyTooLarge(int(declared))
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise BodyTooLarge(len(body))
    try:
        value = json.loads(bytes(body).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as err:
        raise InputError(f"not valid JSON ({str(err).splitlines()[0][:80]})", field="body",
                         value=bytes(body[:80]).decode("utf-8", "replace")) from None
    if not isinstance(value, dict):
        raise InputError("must be a JSON object", field="body", value=type(value).__name__)
    return value


def _only_fields(body, allowed):
    extra = sorted(set(body) - set(allowed))
    if extra:
        raise InputError(f"unknown field (expected {', '.join(allowed)})", field=extra[0],
                         value=body[extra[0]] if not isinstance(body[extra[0]], (dict, list))
                         else type(body[extra[0]]).__name__)


def parse_recommend(body):
    """(history, k, exclude_seen, on_unknown, single) of a /recommend body."""
    _only_fields(body, ("history", "histories", "k", "exclude_seen", "on_unknown"))
    if ("history" in body) == ("histories" in body):
        raise InputError("give exactly one of 'history' (one list of item tokens) and "
                         "'histories' (a list of such lists)", field="history", value=None)
    if "histories" in body:
        history = body["histories"]
        if not isinstance(history, list) or not history or not all(
                isinstance(h, list) for h in history):
            raise InputError("must be a non-empty list of histories (lists of item tokens)",
                             field="histories", value=history if not isinstance(
                                 history, (list, dict)) else type(history).__name__)
    else:
        history = body["history"]
        if isinstance(history, list) and history and isinstance(history[0], list):
            raise InputError("a batch goes in 'histories'", field="history", value="list")
    return (history, body.get("k", 10), body.get("exclude_seen", True),
            body.get("on_unknown", "error"), "history" in body)


def parse_new_items(body):
    """(tokens, titles) of a POST /items body."""
    _only_fields(body, ("items",))
    items = body.get("items")
    if not isinstance(items, list) or not items:
        raise InputError("must be a non-empty list of {\"item\": token, \"title\": text}",
                         field="items", value=items if not isinstance(items, dict) else "object")
    for i, entry in enumerate(items):
        if not isinstance(entry, dict) or set(entry) != {"item", "title"}:
            raise InputError("must be an object with exactly the fields 'item' and 'title'",
                             field=f"items[{i}]", value=entry if not isinstance(
                                 entry, dict) else sorted(entry))
    return [e["item"] for e in items], [e["title"] for e in items]


def create_app(recommender, max_body_bytes=MAX_BODY_BYTES):
    """The FastAPI application serving `recommender`."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    app = FastAPI(title="recbole-llm2rec", docs_url=None, redoc_url=None)

    @app.exception_handler(InputError)
    async def bad_input(request, err):
        return JSONResponse(error_body(err), status_code=400)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request, err):
        return JSONResponse({"error": f"request body over {max_body_bytes} bytes",
                             "field": "body", "value": err.args[0]}, status_code=413)

    @app.exception_handler(HTTPException)
    async def http_error(request, err):  # unknown paths and methods, in the same JSON form
        return JSONResponse({"error": str(err.detail), "field": "path",
                             "value": f"{request.method} {request.url.path}"},
                            status_code=err.status_code)

    @app.exception_handler(Exception)
    async def failure(request, err):
        return JSONResponse({"error": f"internal error: {type(err).__name__}", "field": None,
                             "value": None}, status_code=500)

    @app.get("/health")
    async def health():
        return {"status": "ok", **recommender.info()}

    @app.post("/recommend")
    async def recommend(request: Request):
        history, k, exclude_seen, on_unknown, single = parse_recommend(
            await read_json(request, max_body_bytes))
        answer, version = await run_in_threadpool(
            recommender.recommend_with_version, history, k, exclude_seen, on_unknown)

        def listed(pairs):
            return [{"item": token, "score": score} for token, score in pairs]

        items = listed(answer) if single else [listed(a) for a in answer]
        return {"recommendations": items, "version": version}

    @app.post("/items")
    async def add_items(request: Request):
        tokens, titles = parse_new_items(await read_json(request, max_body_bytes))
        size = await run_in_threadpool(recommender.add_items, tokens, titles)
        return {"added": len(tokens), "catalogue": size}

    @app.delete("/items")
    async def remove_items(request: Request):
        body = await read_json(request, max_body_bytes)
        _only_fields(body, ("items",))
        size = await run_in_threadpool(recommender.remove_items, body.get("items"))
        return {"removed": len(body["items"]), "catalogue": size}

    return app
