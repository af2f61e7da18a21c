"""The HTTP endpoint, started for real (`python -m recbole_llm2rec.serve`) on a free loopback
port: every bad input is a 4xx naming field and value, 16 concurrent clients get no error, and
items added or removed while requests are in flight are in each answer wholly or not at all."""
import json
import os
import threading
import time

import httpx
import pytest

from benchmarks.serving_load import load, running_server
from recbole_llm2rec.export import export
from serving_helpers import embedded_slice, history_cases, train
from tiny_llm import save_tiny_model

MAX_BODY = 65536


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A `text` TextSASRec on a 200-user Games slice with a tiny-LLM `.feat`, its bundle, and
    the server running it."""
    tmp = tmp_path_factory.mktemp("http")
    model_dir = save_tiny_model(tmp / "tiny-qwen2", "qwen2")
    root = embedded_slice(tmp / "data", 200, model_dir)
    ckpt, _, data, test_data = train("TextSASRec", root, "Games", tmp, text_emb="tiny",
                                     item_repr="text")
    bundle = str(tmp / "bundle")
    export(ckpt, bundle)
    with open(os.path.join(bundle, "items.json"), encoding="utf-8") as fh:
        items = json.load(fh)
    titles = dict(zip(items["tokens"], items["titles"]))
    with running_server(bundle, "--max_body_bytes", str(MAX_BODY)) as url:
        yield dict(url=url, histories=history_cases(data, test_data), titles=titles,
                   size=data.item_num - 1)


def call(served, method, path, body=None, raw=None):
    content = raw if raw is not None else (json.dumps(body) if body is not None else None)
    reply = httpx.request(method, served["url"] + path, content=content, timeout=60,
                          headers={"content-type": "application/json"})
    return reply.status_code, reply.json()


def test_health_names_model_catalogue_and_embedder(served):
    status, body = call(served, "GET", "/health")
    assert status == 200 and body["model"] == "TextSASRec" and body["item_repr"] == "text"
    assert body["catalogue"] == served["size"] and body["index"] == "exact"
    assert body["embedder"]["model_type"] == "qwen2" and body["embedder"]["pooling"] == "mean"


def bad_cases(size, known):
    h = [known]
    return [
        ("POST", "/recommend", None, b'{"history": [', 400, "body"),
        ("POST", "/recommend", None, b"[1, 2]", 400, "body"),
        ("POST", "/recommend", None, b"\xff\xfe", 400, "body"),
        ("POST", "/recommend", {}, None, 400, "history"),
        ("POST", "/recommend", {"history": []}, None, 400, "history"),
        ("POST", "/recommend", {"history": known}, None, 400, "history"),
        ("POST", "/recommend", {"history": [known, "nope-9"]}, None, 400, "history"),
        ("POST", "/recommend", {"histories": [h, []]}, None, 400, "history[1]"),
        ("POST", "/recommend", {"histories": []}, None, 400, "histories"),
        ("POST", "/recommend", {"history": h, "histories": [h]}, None, 400, "history"),
        ("POST", "/recommend", {"history": h, "k": 0}, None, 400, "k"),
        ("POST", "/recommend", {"history": h, "k": -3}, None, 400, "k"),
        ("POST", "/recommend", {"history": h, "k": size + 1}, None, 400, "k"),
        ("POST", "/recommend", {"history": h, "k": "ten"}, None, 400, "k"),
        ("POST", "/recommend", {"history": h, "exclude_seen": "yes"}, None, 400, "exclude_seen"),
        ("POST", "/recommend", {"history": h, "on_unknown": "drop"}, None, 400, "on_unknown"),
        ("POST", "/recommend", {"history": h, "kk": 3}, None, 400, "kk"),
        ("POST", "/recommend", None, b'{"history": ["' + b"a" * (2 * MAX_BODY) + b'"]}', 413,
         "body"),
        ("POST", "/items", {}, None, 400, "items"),
        ("POST", "/items", {"items": [{"item": "n1"}]}, None, 400, "items[0]"),
        ("POST", "/items", {"items": [{"item": "n1", "title": ""}]}, None, 400, "titles[0]"),
        ("POST", "/items", {"items": [{"item": "n1", "title": "A"},
                                      {"item": known, "title": "B"}]}, None, 400, "items"),
        ("POST", "/items", {"items": [{"item": "n1", "title": "A"},
                                      {"item": "n1", "title": "B"}]}, None, 400, "items[1]"),
        ("DELETE", "/items", {"items": [known, "nope-9"]}, None, 400, "items"),
        ("DELETE", "/items", {"items": []}, None, 400, "items"),
        ("GET", "/nothing", None, None, 404, "path"),
    ]


def test_every_bad_input_is_a_4xx_naming_field_and_value_and_nothing_half_applies(served):
    before = call(served, "GET", "/health")[1]["catalogue"]
    known = served["histories"][0][0]
    for method, path, body, raw, status, field in bad_cases(served["size"], known):
        got, answer = call(served, method, path, body, raw)
        case = (method, path, body if raw is None else raw[:40])
        assert got == status, (case, answer)
        assert answer["field"] == field and answer["error"], (case, answer)
        assert "value" in answer
    _, answer = call(served, "POST", "/recommend", {"history": [known, "nope-9"]})
    assert answer["value"] == ["nope-9"]
    _, answer = call(served, "POST", "/recommend", {"history": [known], "k": 0})
    assert answer["value"] == 0
    health = call(served, "GET", "/health")
    assert health[0] == 200 and health[1]["catalogue"] == before  # alive, nothing applied
    assert call(served, "POST", "/recommend", {"history": [known], "k": 5})[0] == 200


def test_500_requests_from_16_concurrent_clients_without_error(served):
    stats = load(served["url"], served["histories"], requests=500, clients=16)
    assert stats["requests"] == 500 and stats["errors"] == [], stats["errors"][:3]
    print(f"\n500 requests, 16 clients: p50 {stats['p50_ms']:.1f} ms, "
          f"p99 {stats['p99_ms']:.1f} ms, {stats['qps']:.0f} requests/s")


def test_items_added_or_removed_in_flight_are_wholly_visible_or_not(served):
    """Ten new items carry the titles of a history's current top 10, so they score as those
    do: a top-30 answer (room for items whose titles tie with them) holds all ten or none."""
    history = served["histories"][0]
    status, answer = call(served, "POST", "/recommend", {"history": history, "k": 10})
    top = [r["item"] for r in answer["recommendations"]]
    new = [f"copy-{t}" for t in top]
    items = [{"item": n, "title": served["titles"][t]} for n, t in zip(new, top)]
    seen_counts = set()

    def check(body):
        count = sum(r["item"] in new for r in body["recommendations"])
        seen_counts.add(count)
        return None if count in (0, len(new)) else f"{count} of the {len(new)} new items"

    writes = []

    def churn():
        for _ in range(3):
            time.sleep(0.3)
            writes.append(call(served, "POST", "/items", {"items": items})[0])
            time.sleep(0.3)
            writes.append(call(served, "DELETE", "/items", {"items": new})[0])
        writes.append(call(served, "POST", "/items", {"items": items})[0])

    warm = [{"item": "warm-up", "title": "Warm up the embedder"}]
    assert call(served, "POST", "/items", {"items": warm})[0] == 200
    assert call(served, "DELETE", "/items", {"items": ["warm-up"]})[0] == 200
    writer = threading.Thread(target=churn)
    writer.start()
    errors = []
    while writer.is_alive():  # requests in flight all the while the writer works
        errors += load(served["url"], [history], requests=64, clients=16, k=30,
                       check=check)["errors"]
    writer.join()
    assert writes == [200] * 7 and errors == [], (writes, errors[:3])
    final = call(served, "POST", "/recommend", {"history": history, "k": 30})[1]
    assert sum(r["item"] in new for r in final["recommendations"]) == len(new)
    assert seen_counts == {0, len(new)}  # both states were served while the writer ran
    call(served, "DELETE", "/items", {"items": new})
