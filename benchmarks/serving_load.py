"""The real HTTP server in a child process, and a load of concurrent clients against it.

Shared by the endpoint's tests and `benchmarks/serving.py` (which writes p50/p99 latency into
benchmarks/results/serving.md):

    with running_server(bundle) as url:
        stats = load(url, histories, requests=500, clients=16)
"""
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    """A TCP port free on the loopback interface now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_server(bundle, *args, timeout=180):
    """`python -m recbole_llm2rec.serve --bundle bundle` on a free loopback port, until the
    block ends; yields its base URL once /health answers."""
    import httpx

    port = free_port()
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, "-m", "recbole_llm2rec.serve", "--bundle",
                             str(bundle), "--port", str(port), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: "
                                   f"{proc.stdout.read()[-2000:]}")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not answer /health in time")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def load(url, histories, requests=500, clients=16, k=10, check=None):
    """`requests` POST /recommend calls (history i mod len(histories)) from `clients` threads,
    each with its own connection. `check(answer_json)` may inspect each answer. Returns
    {requests, errors (list of (status, body)), p50_ms, p99_ms, seconds, qps}."""
    import httpx

    latencies, errors, lock = [], [], threading.Lock()
    counter = iter(range(requests))

    def client():
        with httpx.Client(timeout=60) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    reply = http.post(url + "/recommend", json={
                        "history": histories[i % len(histories)], "k": k})
                    ok = reply.status_code == 200
                    body = reply.json()
                except (httpx.HTTPError, ValueError) as err:
                    ok, body, reply = False, repr(err), None
                took = time.perf_counter() - start
                problem = None if not ok else (check(body) if check else None)
                with lock:
                    latencies.append(took)
                    if not ok or problem:
                        errors.append((getattr(reply, "status_code", None), problem or body))

    start = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - start
    ordered = sorted(latencies)

    def pct(q):
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return {"requests": len(latencies), "errors": errors, "p50_ms": pct(0.5),
            "p99_ms": pct(0.99), "seconds": seconds, "qps": len(latencies) / seconds}
