"""Serve an exported bundle over HTTP (FastAPI + uvicorn), on the loopback interface by default.

    python -m recbole_llm2rec.serve --bundle bundle/ --port 8000

Endpoints: POST /recommend, POST /items, DELETE /items, GET /health
(`recbole_llm2rec.serving.app`); docs/serving.md has the requests and answers.
"""
import argparse
import sys

from recbole_llm2rec.errors import InputError, cli_main

PROG = "python -m recbole_llm2rec.serve"


def build_parser():
    from recbole_llm2rec.serving.app import MAX_BODY_BYTES
    from recbole_llm2rec.serving.index import HNSW_EF_SEARCH, KINDS

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    p.add_argument("--bundle", required=True, help="folder written by python -m "
                   "recbole_llm2rec.export")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: "
                   "loopback only; 0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--index", choices=KINDS, default="auto",
                   help="top-k search: exact, hnsw (approximate), or auto (by catalogue size)")
    p.add_argument("--ef_search", type=int, default=HNSW_EF_SEARCH,
                   help="hnsw: candidates kept per search; higher is more exact and slower "
                        "(benchmarks/results/serving.md)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch and faiss threads per request (default 1)")
    p.add_argument("--max_body_bytes", type=int, default=MAX_BODY_BYTES,
                   help="larger request bodies are refused with 413")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    for name in ("port", "threads", "max_body_bytes", "ef_search"):
        value = getattr(args, name)
        if value < (0 if name == "port" else 1) or (name == "port" and value > 65535):
            raise InputError("out of range", field=name, value=value)
    import faiss
    import torch
    import uvicorn

    from recbole_llm2rec.serving.app import create_app
    from recbole_llm2rec.serving.recommender import Recommender

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    recommender = Recommender.load(args.bundle, index=args.index, ef_search=args.ef_search)
    info = recommender.info()
    print(f"{info['model']}: {info['catalogue']} items, {info['index']} index; serving on "
          f"http://{args.host}:{args.port}", flush=True)
    uvicorn.run(create_app(recommender, args.max_body_bytes), host=args.host, port=args.port,
                log_level="warning")


if __name__ == "__main__":
    cli_main(main, PROG, sys.argv[1:])
