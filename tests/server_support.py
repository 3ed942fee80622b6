"""Processes for the HTTP server tests: a redis-server that can be restarted on its port, `fstore serve`
as a platform engineer runs it, and a re-implementation of how Feast's HTTP client reads a response.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

FSTORE = str(Path(sys.executable).parent / "fstore")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisProcess:
    """A redis-server on a fixed loopback port; ``aof`` makes every acknowledged write survive a restart."""

    def __init__(self, workdir: Path, aof: bool = False):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.aof = aof
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "RedisProcess":
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is not installed; `make test` installs it")
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.aof else ["--appendonly", "no"]
        self.proc = subprocess.Popen([exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      *persistence, "--dir", str(self.workdir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.02)
        pytest.fail("redis-server did not start within 10 s")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=15)
            self.proc = None


class ServerProcess:
    """``fstore serve`` in a subprocess on a free loopback port, its log in ``log_path``."""

    def __init__(self, project: Path, redis_url: str, log_path: Path, *args: str, workers: int = 1,
                 env: dict[str, str] | None = None, host: str = "127.0.0.1"):
        self.project, self.redis_url, self.log_path = project, redis_url, log_path
        self.args, self.workers, self.env, self.host = args, workers, env or {}, host
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [FSTORE, "serve", "--project-dir", str(self.project), "--redis-url", self.redis_url,
                "--host", self.host, "--port", str(self.port), "--workers", str(self.workers), *self.args]

    def start(self, timeout: float = 30) -> "ServerProcess":
        self.log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.command(), stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"fstore serve exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"fstore serve did not answer within {timeout} s:\n{self.log_path.read_text()[-3000:]}")

    def _workers(self) -> list[psutil.Process]:
        assert self.proc is not None
        parent = psutil.Process(self.proc.pid)
        return [p for p in parent.children(recursive=True)
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE
                and "resource_tracker" not in " ".join(p.cmdline())]

    def worker_pids(self) -> list[int]:
        """The worker processes' ids (none when one process serves)."""
        return sorted(p.pid for p in self._workers())

    def workers_rss(self) -> int:
        """Bytes of resident memory of the serving processes (the workers, or the one process)."""
        assert self.proc is not None
        return sum(p.memory_info().rss for p in (self._workers() or [psutil.Process(self.proc.pid)]))

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None
            self.log.close()


def fstore(project: Path, redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([FSTORE, *args, "--project-dir", str(project)], capture_output=True, text=True,
                          env={**os.environ, "FEATURE_STORE_REDIS_URL": redis_url})


# -- Feast's client, as read in its source ---------------------------------------------------------
#
# Feast's remote online store (sdk/python/feast/infra/online_stores/remote.py, 0.67) reads a
# /get-online-features response two ways. Both are re-implemented here from reading that code, with
# Python types standing in for its protobuf values:
#
# * whole responses: metadata.feature_names, then per result each value converted by inferring a
#   Feast type from the JSON value (int -> INT64, float -> DOUBLE, str -> STRING, bool -> BOOL,
#   null -> an empty value) and each status name mapped to its enum (any other name -> INVALID);
# * per view (online_read): results indexed like metadata.feature_names, a value kept only when its
#   status is "PRESENT" and then converted by the feature's declared type (UNIX_TIMESTAMP by int()),
#   and the row's event time from results[1].event_timestamps[0] with "Z" replaced by "+00:00".

FEAST_STATUSES = ("PRESENT", "NULL_VALUE", "NOT_FOUND", "OUTSIDE_MAX_AGE")
_INFERRED = {int: "INT64", float: "DOUBLE", str: "STRING", bool: "BOOL"}


def feast_infer(value: Any) -> tuple[str, Any]:
    """(Feast value type, value) as its client's type inference sees one JSON value."""
    if value is None:
        return "EMPTY", None
    kind = _INFERRED.get(type(value))
    if kind is None:
        raise TypeError(f"Feast cannot infer a value type from {value!r} ({type(value).__name__})")
    return kind, value


def feast_read_response(body: dict) -> dict[str, list[tuple[str, Any, str]]]:
    """Feast's whole-response reading: name -> [(value type, value, status enum name)]."""
    names = body.get("metadata", {}).get("feature_names", [])
    out = {}
    for name, result in zip(names, body.get("results", []), strict=True):
        values = [feast_infer(v) for v in result.get("values", [])]
        statuses = [s if s in FEAST_STATUSES else "INVALID" for s in result.get("statuses", [])]
        out[name] = [(t, v, s) for (t, v), s in zip(values, statuses, strict=True)]
    return out


_TYPED = {"INT64": int, "DOUBLE": float, "STRING": str, "BOOL": bool, "UNIX_TIMESTAMP": int,
          "DECIMAL": str}


def feast_online_read(body: dict, requested: list[str], types: dict[str, str], n: int
                      ) -> list[tuple[datetime | None, dict[str, Any]]]:
    """Feast's per-view reading (``online_read``): one (event time, {feature: value or None}) per entity."""
    results = body["results"]
    event_ts = None
    if len(results) > 1 and results[1].get("event_timestamps"):
        event_ts = datetime.fromisoformat(results[1]["event_timestamps"][0].replace("Z", "+00:00"))
    rows = []
    for i in range(n):
        values: dict[str, Any] = {}
        for index, name in enumerate(body["metadata"]["feature_names"]):
            if name in requested:
                if results[index]["statuses"][i] == "PRESENT":
                    values[name] = _TYPED[types[name]](results[index]["values"][i])
                else:
                    values[name] = None
        rows.append((event_ts, values))
    return rows
