"""Session fixtures: a real dbt build of the example project, and a real redis-server.

Both are started once per test session. The project is copied into a temporary
directory so tests never touch the checkout's DuckDB file or target/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"
BIN = Path(sys.executable).parent

# What a copy of the dbt project needs; everything else (python/, tests/, .venv) stays behind.
PROJECT_FILES = ("dbt_project.yml", "profiles.yml", "models", "macros", "demo_macros", "seeds", "tests/dbt")


def copy_project(dest: Path) -> Path:
    """Copy the example dbt project (not the Python package) into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name)
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def run_dbt(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run the dbt CLI of this interpreter's environment in ``project``."""
    proc = subprocess.run(
        [str(BIN / "dbt"), *args, "--profiles-dir", str(project)],
        cwd=project, capture_output=True, text=True,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"dbt {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-2000:]}")
    return proc


@pytest.fixture(scope="session")
def built_project(tmp_path_factory) -> Path:
    """The example project, built once per session with `dbt build` on DuckDB (read-only for tests)."""
    project = copy_project(tmp_path_factory.mktemp("built") / "project")
    run_dbt(project, "build")
    return project


@pytest.fixture
def project_copy(tmp_path) -> Path:
    """A fresh, unbuilt copy of the example project that a test may break."""
    return copy_project(tmp_path / "project")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(workdir: Path, *args: str) -> tuple[subprocess.Popen, int]:
    """A real redis-server on a free loopback port (extra ``args`` appended), once it accepts connections."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.fail("redis-server is not installed; `make test` installs it (apt-get install -y redis-server)")
    port = free_port()
    # sanitize-dump-payload: the server checks every entry of the hashes the sync RESTOREs.
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--sanitize-dump-payload", "yes", "--dir", str(workdir), *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail("redis-server did not start within 10 s")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """The session's redis-server; yields its URL."""
    proc, port = start_redis(tmp_path_factory.mktemp("redis"))
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def redis_url(redis_server):
    """The session Redis, emptied before the test."""
    import redis

    client = redis.Redis.from_url(redis_server)
    client.flushall()
    client.close()
    return redis_server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):
    """A local three-master Redis Cluster for the session (:class:`cluster_support.LocalCluster`).

    ``.url`` is ``redis+cluster://127.0.0.1:P1,127.0.0.1:P2``, ``.ports`` the three
    masters; ``.flush()``, ``.restart(port)`` and ``.reshard(from_port, to_port, slots)``
    change it, and leave it ok, for every later test: flush before use.
    """
    from cluster_support import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_sentinel(tmp_path):
    """A fresh master, replica and sentinel (:class:`cluster_support.LocalSentinel`) for one test.

    ``.url`` is ``redis+sentinel://127.0.0.1:S/mymaster/0``; ``.failover()`` (or
    ``.failover(kill=True)``) promotes the replica and returns once the sentinel names it.
    """
    from cluster_support import LocalSentinel

    sentinel = LocalSentinel(tmp_path / "sentinel").start()
    try:
        yield sentinel
    finally:
        sentinel.stop()


@pytest.fixture(scope="session")
def postgres_server():
    """The session's PostgreSQL server (:class:`postgres_support.LocalPostgres`), started once.

    ``.host``, ``.port``, ``.user`` (a superuser, no password) and ``.dbname`` (an empty
    database made at start); ``.dsn(dbname=None)``, ``.env(dbname=None)`` (the
    FEATURE_STORE_PG_* variables of profiles.yml's `postgres` target), ``.connect(dbname=None)``
    (psycopg, autocommit) and ``.create_database(name)`` for a test that wants its own.
    """
    from postgres_support import LocalPostgres, PostgresUnavailable

    try:
        server = LocalPostgres().start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def spark_env(tmp_path_factory):
    """Apache Spark for the session (:class:`spark_support.SparkEnv`): one temporary
    FEATURE_STORE_SPARK_DIR (warehouse and Derby metastore) for profiles.yml's `spark` output.

    ``.dbt(project, *args)`` runs dbt with it (dbt-spark's session method starts the JVM inside
    that subprocess); ``.session()`` then opens this process's SparkSession on the same tables,
    after which dbt may not run on Spark again (Derby: one JVM at a time).
    """
    from spark_support import SparkEnv, SparkUnavailable, check_installed

    try:
        check_installed()
    except SparkUnavailable as exc:
        pytest.fail(str(exc))
    env = SparkEnv(tmp_path_factory.mktemp("spark"))
    try:
        yield env
    finally:
        env.stop()
