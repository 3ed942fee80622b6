"""A throwaway redis-server for the benchmarks (unless --redis-url names one)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator


@contextlib.contextmanager
def redis_server(url: str | None, cluster: bool = False) -> Iterator[tuple[str, int | None]]:
    """Yield (url, server pid): ``url`` as given, or a fresh server on a free loopback port
    (``cluster``: a fresh local three-master cluster, the one the tests start; no pid)."""
    if url:
        yield url, None
        return
    if cluster:
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from cluster_support import LocalCluster

        with tempfile.TemporaryDirectory() as workdir:
            local = LocalCluster(Path(workdir)).start()
            try:
                yield local.url, None
            finally:
                local.stop()
        return
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (apt-get install -y redis-server), or pass --redis-url")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as workdir:
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", workdir], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise SystemExit("redis-server did not start within 10 s") from None
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0", proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=10)
