"""Local Redis Cluster and Sentinel deployments for tests: real redis-server processes on loopback.

:class:`LocalCluster` runs three masters (no replicas) made into a cluster by
``redis-cli --cluster create``; :class:`LocalSentinel` runs a master, one replica and
one sentinel. Both start in a few seconds, listen on free 127.0.0.1 ports, keep no data
on disk, and :meth:`stop` ends every process they started. The fixtures in conftest.py
wrap them; tests that need a variant (passwords) build one directly.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

# Short enough for a failover in a few seconds, long enough that a loaded test machine
# does not see a master as down while it is merely slow.
SENTINEL_DOWN_AFTER_MS = 1000
SENTINEL_FAILOVER_TIMEOUT_MS = 5000
CLUSTER_NODE_TIMEOUT_MS = 3000


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports on 127.0.0.1 that nothing listens on right now."""
    # Not conftest's free_port: conftest imports this module, and asking n times could
    # hand out the same port twice.
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def _exe(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(f"{name} is not installed; `make test` installs it (apt-get install -y redis-server)")
    return path


def wait_for(what: str, check: Callable[[], bool], timeout: float = 15.0, every: float = 0.05) -> None:
    """Poll ``check()`` until true (errors count as false); AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, OSError) as exc:
            last = exc
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last})" if last else ""))


def _admin(port: int, password: str | None = None) -> redis.Redis:
    """A short-lived admin connection to one server (not the code under test)."""
    return redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=2, socket_connect_timeout=1,
                       decode_responses=True)


def _call(port: int, *args, password: str | None = None):
    with _admin(port, password) as r:
        return r.execute_command(*args)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


class LocalCluster:
    """Three cluster masters on free ports under ``workdir``; ``password`` protects every node if given."""

    def __init__(self, workdir: Path, password: str | None = None):
        self.workdir = Path(workdir)
        self.password = password
        self.ports: list[int] = []
        self.bus_ports: dict[int, int] = {}
        self.procs: dict[int, subprocess.Popen] = {}

    @property
    def url(self) -> str:
        """``redis+cluster://`` URL naming the first two nodes (the client finds the third)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis+cluster://{auth}" + ",".join(f"127.0.0.1:{p}" for p in self.ports[:2])

    def start(self) -> LocalCluster:
        """Start the nodes, create the cluster and wait until every node says ``cluster_state:ok``."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            ports = free_ports(6)
            # The bus port is explicit: by default it is port + 10000, which may be taken or above 65535.
            self.ports, self.bus_ports = ports[:3], dict(zip(ports[:3], ports[3:]))
            for port in self.ports:
                self._spawn(port)
            for port in self.ports:
                wait_for(f"cluster node {port} to accept connections", lambda p=port: self._ping(p), timeout=10)
            self._cluster_cli("create", *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-yes")
            self.wait_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _spawn(self, port: int) -> None:
        args = [_exe("redis-server"), "--cluster-enabled", "yes",
                "--cluster-config-file", str(self.workdir / f"nodes-{port}.conf"),
                "--cluster-node-timeout", str(CLUSTER_NODE_TIMEOUT_MS), "--cluster-port", str(self.bus_ports[port]),
                "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(self.workdir)]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        with open(self.workdir / f"redis-{port}.log", "ab") as log:
            self.procs[port] = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def _ping(self, port: int) -> bool:
        return bool(_call(port, "PING", password=self.password))

    def state(self, port: int) -> str:
        """``cluster_state`` as node ``port`` reports it (``ok`` or ``fail``)."""
        info = _call(port, "CLUSTER", "INFO", password=self.password)
        return dict(line.split(":", 1) for line in info.split() if ":" in line)["cluster_state"]

    def node_id(self, port: int) -> str:
        """The cluster node id of the node on ``port``."""
        return _call(port, "CLUSTER", "MYID", password=self.password)

    def slot_counts(self, asked: int) -> dict[int, int]:
        """How many hash slots each node serves (port -> count), as the node on ``asked`` sees it."""
        counts = dict.fromkeys(self.ports, 0)
        for line in _call(asked, "CLUSTER", "NODES", password=self.password).splitlines():
            fields = line.split()  # id ip:port@cport flags master ping pong epoch link slot...
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for part in fields[8:]:
                if part.startswith("["):
                    continue  # a slot being migrated or imported
                start, _, end = part.partition("-")
                counts[port] = counts.get(port, 0) + int(end or start) - int(start) + 1
        return counts

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Wait until every node reports ``cluster_state:ok`` and all agree on who serves which slots."""
        def ok() -> bool:
            if not all(self.state(p) == "ok" for p in self.ports):
                return False
            views = [self.slot_counts(p) for p in self.ports]
            return all(v == views[0] for v in views) and sum(views[0].values()) == 16384
        wait_for("the cluster to be ok on every node", ok, timeout=timeout)

    def flush(self) -> None:
        """Empty every master."""
        for port in self.ports:
            _call(port, "FLUSHALL", password=self.password)

    def restart(self, port: int, wait: bool = True) -> None:
        """Kill the master on ``port`` (SIGKILL: a crash, its data is gone) and start it again with the same config."""
        proc = self.procs[port]
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        self._spawn(port)
        wait_for(f"cluster node {port} to accept connections again", lambda: self._ping(port), timeout=10)
        if wait:
            self.wait_ok()

    def reshard(self, from_port: int, to_port: int, slots: int) -> None:
        """Move ``slots`` hash slots, with their keys, between two masters (``redis-cli --cluster reshard``)."""
        self._cluster_cli("reshard", f"127.0.0.1:{from_port}", "--cluster-from", self.node_id(from_port),
                          "--cluster-to", self.node_id(to_port), "--cluster-slots", str(slots), "--cluster-yes")
        self.wait_ok()

    def _cluster_cli(self, command: str, *args: str) -> None:
        """``redis-cli --cluster <command> ...``, with the password if the cluster has one."""
        cli = [_exe("redis-cli"), *(["-a", self.password, "--no-auth-warning"] if self.password else []),
               "--cluster", command, *args]
        proc = subprocess.run(cli, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster {command} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")

    def stop(self) -> None:
        """Stop every node this cluster started."""
        for proc in self.procs.values():
            _stop(proc)


class LocalSentinel:
    """A master, its replica and one sentinel watching them as ``mymaster``, under ``workdir``.

    ``password`` protects the master and the replica (the sentinel is given it with
    ``sentinel auth-pass``); ``sentinel_password`` protects the sentinel itself.
    """

    service = "mymaster"

    def __init__(self, workdir: Path, password: str | None = None, sentinel_password: str | None = None):
        self.workdir = Path(workdir)
        self.password = password
        self.sentinel_password = sentinel_password
        self.procs: list[subprocess.Popen] = []
        self.servers: dict[int, subprocess.Popen] = {}
        self.master_port = 0
        self.replica_port = 0
        self.sentinel_port = 0

    @property
    def url(self) -> str:
        """``redis+sentinel://`` URL of this sentinel, service ``mymaster``, database 0."""
        auth = f":{self.password}@" if self.password else ""
        query = f"?sentinel_password={self.sentinel_password}" if self.sentinel_password else ""
        return f"redis+sentinel://{auth}127.0.0.1:{self.sentinel_port}/{self.service}/0{query}"

    def start(self) -> LocalSentinel:
        """Start master, replica and sentinel; return once the sentinel knows a replica that can take over."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        try:
            auth = ["--requirepass", self.password, "--masterauth", self.password] if self.password else []
            # The replica syncs at once, not after the default 5 s diskless-sync delay.
            fast_sync = ["--repl-diskless-sync-delay", "0"]
            self.master_port = self._server(*fast_sync, *auth)
            self.replica_port = self._server("--replicaof", "127.0.0.1", str(self.master_port), *fast_sync, *auth)
            wait_for("the replica to sync with the master", lambda: self._info(self.replica_port, "replication")
                     .get("master_link_status") == "up", timeout=10)
            self.sentinel_port = free_port()
            conf = self.workdir / f"sentinel-{self.sentinel_port}.conf"
            lines = [
                f"port {self.sentinel_port}", "bind 127.0.0.1", f"dir {self.workdir}",
                f"sentinel monitor {self.service} 127.0.0.1 {self.master_port} 1",
                f"sentinel down-after-milliseconds {self.service} {SENTINEL_DOWN_AFTER_MS}",
                f"sentinel failover-timeout {self.service} {SENTINEL_FAILOVER_TIMEOUT_MS}",
                f"sentinel parallel-syncs {self.service} 1",
            ]
            if self.password:
                lines.append(f"sentinel auth-pass {self.service} {self.password}")
            if self.sentinel_password:
                lines.append(f"requirepass {self.sentinel_password}")
            conf.write_text("\n".join(lines) + "\n")  # the sentinel rewrites this file: it must be its own
            self.procs.append(subprocess.Popen([_exe("redis-server"), str(conf), "--sentinel"],
                                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_for("the sentinel to see the replica", self._replica_known, timeout=15)
        except BaseException:
            self.stop()
            raise
        return self

    def _server(self, *args: str) -> int:
        port = free_port()
        self.servers[port] = subprocess.Popen(
            [_exe("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(self.servers[port])
        wait_for(f"redis-server {port} to accept connections",
                 lambda: bool(_call(port, "PING", password=self.password)), timeout=10)
        return port

    def _info(self, port: int, section: str) -> dict:
        with _admin(port, self.password) as r:
            return r.info(section)

    def _sentinel(self, *args):
        return _call(self.sentinel_port, *args, password=self.sentinel_password)

    def _replica_known(self) -> bool:
        replicas = self._sentinel("SENTINEL", "REPLICAS", self.service)
        return any(_flags_ok(r) and r.get("master-link-status") == "ok" for r in map(_pairs, replicas))

    def master_address(self) -> tuple[str, int]:
        """Where the sentinel says the master is now."""
        host, port = self._sentinel("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return host, int(port)

    def failover(self, kill: bool = False) -> int:
        """Make the replica the master and wait until the sentinel reports it; return its port.

        ``kill=False``: ``SENTINEL FAILOVER`` (the old master becomes a replica, its clients
        get READONLY); ``kill=True``: the master process is killed and the sentinel
        notices it is down (about ``SENTINEL_DOWN_AFTER_MS``) before it fails over.
        """
        old = self.master_address()[1]
        new = self.replica_port if old == self.master_port else self.master_port
        if kill:
            proc = self.servers[old]
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        else:
            wait_for("the sentinel to accept a failover", self._replica_known, timeout=15)
            self._sentinel("SENTINEL", "FAILOVER", self.service)
        wait_for("the sentinel to report the new master", lambda: self.master_address()[1] == new, timeout=20)
        wait_for("the new master to take writes", lambda: self._info(new, "replication")["role"] == "master",
                 timeout=10)
        return new

    def stop(self) -> None:
        """Stop every process this deployment started."""
        for proc in reversed(self.procs):
            _stop(proc)


def _pairs(flat) -> dict:
    if isinstance(flat, dict):
        return flat
    return dict(zip(flat[::2], flat[1::2]))


def _flags_ok(replica: dict) -> bool:
    flags = set(str(replica.get("flags", "")).split(","))
    return "slave" in flags and not flags & {"s_down", "o_down", "disconnected"}
