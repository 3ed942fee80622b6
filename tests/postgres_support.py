"""A throwaway PostgreSQL server for the test session (:class:`LocalPostgres`).

The server binaries come from the Debian package (`make install` apt-installs it when
missing). initdb and postgres refuse to run as root, and CI runs as root: then every
server command runs as the package's `postgres` user through runuser, and the data
directory lives in a fresh directory under the system temp dir owned by that user
(pytest's own temp dirs are 0700 root, so the `postgres` user could not reach them).
Trust authentication on 127.0.0.1 only, fsync off: a scratch server, nothing to keep.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["LocalPostgres", "PostgresUnavailable", "find_server_bin"]

SERVER_USER = "postgres"  # the OS account the Debian package creates


class PostgresUnavailable(RuntimeError):
    """No server binaries, or no account to run them as."""


def find_server_bin() -> Path:
    """The directory holding initdb and pg_ctl: PATH first, then the newest /usr/lib/postgresql/*/bin."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                        key=lambda p: [int(x) if x.isdigit() else 0 for x in Path(p).parts[-3].split(".")])
    if not candidates:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) not found; `make install` installs them "
            "(apt-get install -y postgresql)")
    return Path(candidates[-1]).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalPostgres:
    """One PostgreSQL server on 127.0.0.1:<free port>, superuser ``user`` without password.

    ``start()`` returns once it accepts connections and ``dbname`` exists; ``stop()``
    shuts it down (immediate mode: nothing to flush) and removes its files.
    """

    def __init__(self, user: str = "postgres", dbname: str = "feature_store") -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.user = user
        self.dbname = dbname
        self.bin = find_server_bin()
        self.root: Path | None = None
        self._as_root = os.geteuid() == 0

    # -- what clients need ------------------------------------------------------------------

    def dsn(self, dbname: str | None = None) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname or self.dbname}"

    def env(self, dbname: str | None = None) -> dict[str, str]:
        """The variables profiles.yml's `postgres` output reads."""
        return {"FEATURE_STORE_PG_HOST": self.host, "FEATURE_STORE_PG_PORT": str(self.port),
                "FEATURE_STORE_PG_USER": self.user, "FEATURE_STORE_PG_DBNAME": dbname or self.dbname}

    def connect(self, dbname: str | None = None, autocommit: bool = True):
        import psycopg

        return psycopg.connect(self.dsn(dbname), autocommit=autocommit)

    def create_database(self, name: str) -> str:
        """A new, empty database (dropped first if it exists), for a test that wants its own."""
        from psycopg import sql

        with self.connect("postgres") as con:
            con.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            con.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    # -- lifecycle --------------------------------------------------------------------------

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        if self._as_root:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
        if check and proc.returncode != 0:
            log = self.root / "server.log" if self.root else None
            tail = log.read_text()[-2000:] if log and log.exists() else ""
            raise PostgresUnavailable(f"{' '.join(cmd)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}\n{tail}")
        return proc

    def start(self, attempts: int = 3) -> LocalPostgres:
        self.root = Path(tempfile.mkdtemp(prefix="fs-pg-"))
        try:
            self._start(attempts)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, attempts: int) -> None:
        assert self.root is not None
        if self._as_root:
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root, and there is no '{SERVER_USER}' user to run the server as; "
                    "the Debian postgresql package creates it") from None
            os.chown(self.root, account.pw_uid, account.pw_gid)
        data = self.root / "data"
        self._run("initdb", "-D", str(data), "-U", self.user, "-A", "trust", "-E", "UTF8",
                  "--locale=C", "--no-sync")
        for attempt in range(attempts):
            # The port is free when picked and may be taken before the server binds it: retry.
            self.port = _free_port()
            opts = (f"-c listen_addresses={self.host} -p {self.port} -k {self.root} "
                    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            proc = self._run("pg_ctl", "-D", str(data), "-l", str(self.root / "server.log"), "-o", opts,
                             "-w", "-t", "30", "start", check=attempt == attempts - 1)
            if proc.returncode == 0:
                break
        self._wait_ready()
        self.create_database(self.dbname)

    def _wait_ready(self, timeout: float = 30) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.root / "data" / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.root / "data"), "stop", "-m", "immediate", "-w", check=False)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None
