"""How fast ``fstore serve`` answers ``POST /get-online-features`` on loopback, next to the in-process read.

Writes a small dbt project (a hand-written manifest of bench/online.py's two views, three
features each: no dbt run), syncs --users users into a fresh redis-server with the sync's
own writer, starts ``fstore serve`` (workers: one per core unless --workers), and runs a
closed-loop client at concurrency 1, 8 and 32 with two requests:

* a single entity x 6 features;
* 100 entities x 6 features.

The client is plain asyncio on uvloop over keep-alive connections, one request in flight
per connection, so it costs little CPU; it still shares the machine's cores with the
server and Redis, so its own CPU is printed (and the server's). Each case runs --seconds
after a warm-up; every answer is checked to be 200 and the first one equal to the
in-process read. The in-process ``get_online_features`` (sync redis-py) is timed in the
same run for comparison.

Targets on the 2-core VM: single entity c=1 p99 <= 1 ms; single entity c=8 >= 3,500
requests/s with p99 <= 5 ms; 100 entities c=8 >= 500 requests/s.

    python bench/server.py
    python bench/server.py --workers 1 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "bench"))
import online as online_bench  # noqa: E402
from _redis import redis_server  # noqa: E402

from feature_store.online import OnlineStore, get_online_features  # noqa: E402
from feature_store.registry import Registry  # noqa: E402

PROJECT_YML = """\
name: bench
version: "1.0.0"
config-version: 2
profile: bench
vars:
  "feature_store:entities":
    user: {join_keys: [user_id]}
"""
PROFILES_YML = "bench:\n  target: bench\n  outputs:\n    bench: {type: duckdb, path: bench.duckdb}\n"


def write_project(directory: Path) -> Path:
    """A project whose manifest declares bench/online.py's views (the manifest `dbt parse` would write)."""
    (directory / "target").mkdir(parents=True, exist_ok=True)
    (directory / "dbt_project.yml").write_text(PROJECT_YML)
    (directory / "profiles.yml").write_text(PROFILES_YML)
    manifest = {"nodes": online_bench.manifest_nodes(), "metadata": {"project_name": "bench", "adapter_type": "duckdb"}}
    (directory / "target" / "manifest.json").write_bytes(orjson.dumps(manifest))
    return directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_bytes(port: int, body: dict) -> bytes:
    data = orjson.dumps(body)
    return (f"POST /get-online-features HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def one_call(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> bytes:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise SystemExit(f"the server answered {head.splitlines()[0].decode()}")
    start = head.lower().index(b"content-length:") + 15
    length = int(head[start:head.index(b"\r\n", start)])
    return await reader.readexactly(length)


async def closed_loop(port: int, request: bytes, concurrency: int, seconds: float, warmup: float) -> dict:
    """``concurrency`` connections each sending ``request`` back to back; latencies after ``warmup``."""
    conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(concurrency)]
    latencies: list[int] = []
    start = time.perf_counter()
    measure_from = start + warmup
    stop = measure_from + seconds
    cpu0: list[float] = []

    async def loop(reader, writer):
        perf = time.perf_counter_ns
        while True:
            t0 = perf()
            if t0 / 1e9 >= stop:
                return
            await one_call(reader, writer, request)
            if t0 / 1e9 >= measure_from:
                latencies.append(perf() - t0)

    async def mark_cpu():
        await asyncio.sleep(max(0.0, measure_from - time.perf_counter()))
        cpu0.append(_cpu())

    marker = asyncio.create_task(mark_cpu())
    # The client's own collector pauses would count as server latency.
    gc.collect()
    gc.disable()
    try:
        await asyncio.gather(*(loop(r, w) for r, w in conns))
    finally:
        gc.enable()
    await marker
    cpu = _cpu() - cpu0[0]
    elapsed = time.perf_counter() - measure_from
    for _, w in conns:
        w.close()
    latencies.sort()
    return {"requests": len(latencies), "rps": len(latencies) / elapsed, "p50": latencies[len(latencies) // 2] / 1e6,
            "p99": latencies[int(len(latencies) * 0.99) - 1] / 1e6, "client_cpu": cpu / elapsed}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def in_process(reg: Registry, store: OnlineStore, rows: list[dict], calls: int = 2000) -> tuple[float, float]:
    """p50/p99 ms of the in-process read of the same request."""
    for _ in range(200):
        get_online_features(reg, store, online_bench.FEATURES, rows)
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter_ns()
        get_online_features(reg, store, online_bench.FEATURES, rows)
        samples.append(time.perf_counter_ns() - t0)
    samples.sort()
    return samples[calls // 2] / 1e6, samples[int(calls * 0.99) - 1] / 1e6


def wait_until_up(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"fstore serve exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                if s.recv(100).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("fstore serve did not answer /health within 30 s")


TARGETS = {("1 entity", 1): ("p99", 1.0), ("1 entity", 8): ("rps+p99", (3500, 5.0)), ("100 entities", 8): ("rps", 500)}


def verdict(case: tuple[str, int], r: dict) -> str:
    target = TARGETS.get(case)
    if target is None:
        return ""
    kind, goal = target
    if kind == "p99":
        ok, text = r["p99"] <= goal, f"p99 <= {goal} ms"
    elif kind == "rps":
        ok, text = r["rps"] >= goal, f">= {goal:,} req/s"
    else:
        ok, text = r["rps"] >= goal[0] and r["p99"] <= goal[1], f">= {goal[0]:,} req/s, p99 <= {goal[1]} ms"
    return f"{text}: {'ok' if ok else 'MISSED'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--workers", type=int, default=None, help="server workers (default: one per core)")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per case")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds per case before timing")
    parser.add_argument("--concurrency", default="1,8,32")
    args = parser.parse_args()
    try:
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    except ImportError:
        pass

    with tempfile.TemporaryDirectory() as tmp, redis_server(None) as (url, _):
        project = write_project(Path(tmp) / "project")
        reg = Registry.load(project)
        store = OnlineStore.for_registry(reg, url=url)
        online_bench.load(reg, store, args.users)
        port = free_port()
        cmd = [str(Path(sys.executable).parent / "fstore"), "serve", "--project-dir", str(project),
               "--redis-url", url, "--port", str(port)]
        if args.workers:
            cmd += ["--workers", str(args.workers)]
        server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            wait_until_up(port, server)
            parent = psutil.Process(server.pid)
            workers = [p for p in parent.children(recursive=True) if "resource_tracker" not in " ".join(p.cmdline())]
            procs = [parent, *workers]
            ids = list(range(0, args.users, max(1, args.users // 100)))[:100]
            cases = {"1 entity": [{"user_id": 42}], "100 entities": [{"user_id": u} for u in ids]}
            print(f"fstore serve, {len(workers) or 1} worker(s) on {os.cpu_count()} cores; {args.users:,} users; "
                  f"{args.seconds:.0f} s per case after {args.warmup:.0f} s warm-up; closed loop on 127.0.0.1")
            print(f"{'case':15s} {'conc':>4s} {'req/s':>8s} {'p50 ms':>7s} {'p99 ms':>7s} {'client CPU':>10s} "
                  f"{'server CPU':>10s}  target")
            for label, rows in cases.items():
                body = {"features": online_bench.FEATURES, "entities": {"user_id": [r["user_id"] for r in rows]}}
                request = request_bytes(port, body)
                first = asyncio.run(_first(port, request))
                expected = get_online_features(reg, store, online_bench.FEATURES, rows).to_dict()
                names = first["metadata"]["feature_names"]
                got = dict(zip(names, (r["values"] for r in first["results"]), strict=True))
                assert got["user_id"] == expected["user_id"] and got["clicks_1h"] == expected["clicks_1h"], \
                    "the server's answer differs from the in-process read"
                for c in [int(x) for x in args.concurrency.split(",")]:
                    server_cpu0 = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
                    r = asyncio.run(closed_loop(port, request, c, args.seconds, args.warmup))
                    server_cpu = (sum(p.cpu_times().user + p.cpu_times().system for p in procs) - server_cpu0) / (
                        args.seconds + args.warmup)
                    print(f"{label:15s} {c:4d} {r['rps']:8,.0f} {r['p50']:7.2f} {r['p99']:7.2f} "
                          f"{r['client_cpu']:9.0%} {server_cpu:10.0%}  {verdict((label, c), r)}", flush=True)
                p50, p99 = in_process(reg, store, rows)
                print(f"{'':15s} in-process get_online_features (sync, same run): p50 {p50:.3f} ms, p99 {p99:.3f} ms")
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
            store.close()


async def _first(port: int, request: bytes) -> dict:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = await one_call(reader, writer, request)
    writer.close()
    return orjson.loads(body)


if __name__ == "__main__":
    main()
