"""PostgreSQL managed by Patroni (Debian's ``patroni``) with etcd (Debian's ``etcd-server``), on
loopback, the way docs/deployment.md tells people to run it: one etcd, two nodes, synchronous
replication, automatic failover.

Everything lives in a folder of the test's own (reachable by the ``postgres`` user, which Patroni
and PostgreSQL run as); every process is started here and stopped by its own pid: etcd, each
node's Patroni, and the postmaster Patroni starts (read from ``postmaster.pid``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.ports import free_port
from tests.support.postgres import PostgresUnavailable, _ensure_postgres_user, find_binary
from tests.support.processes import stop_process

# What Patroni is told, besides addresses, folders and passwords: the configuration
# docs/deployment.md shows (tests/system/test_failover.py holds the two the same).
# ttl: how long the leader key outlives its last renewal (a leader that dies or hangs is
# replaced after at most this); loop_wait: how often each Patroni looks; retry_timeout: how long
# it retries etcd and PostgreSQL before it gives up its leadership (loop_wait + 2 × retry_timeout
# must stay under ttl).
DCS = """\
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: false
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        synchronous_commit: "on"
        max_connections: 300
        max_wal_senders: 10
        max_replication_slots: 10"""

NODE = """\
scope: tokensmith
namespace: /{namespace}/
name: {name}
log:
  level: INFO
restapi:
  listen: {address}:{api_port}
  connect_address: {address}:{api_port}
etcd3:
  hosts: {etcd}
bootstrap:
  dcs:
{dcs}
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
    - auth: scram-sha-256
  pg_hba:
    - local all all scram-sha-256
    - host all all {network} scram-sha-256
    - host replication replicator {network} scram-sha-256
postgresql:
  listen: {address}:{port}
  connect_address: {address}:{port}
  data_dir: {folder}/data
  bin_dir: {bin_dir}
  pgpass: {folder}/pgpass
  remove_data_directory_on_rewind_failure: true
  remove_data_directory_on_diverged_timelines: true
  authentication:
    superuser:
      username: postgres
      password: "{password}"
    replication:
      username: replicator
      password: "{replication_password}"
    rewind:
      username: postgres
      password: "{password}"
  parameters:
    unix_socket_directories: "{folder}"
"""


# The values docs/deployment.md shows the configuration with: a production layout's.
DOCUMENTED = {
    "namespace": "tokensmith",
    "name": "db1",
    "folder": "/var/lib/patroni",
    "address": "10.0.3.1",
    "network": "10.0.0.0/16",
    "api_port": 8008,
    "etcd": "etcd1.internal:2379,etcd2.internal:2379,etcd3.internal:2379",
    "dcs": DCS,
    "port": 5432,
    "bin_dir": "/usr/lib/postgresql/15/bin",
    "password": "…",
    "replication_password": "…",
}


class PatroniUnavailable(RuntimeError):
    pass


def missing() -> str | None:
    """Why a Patroni cluster cannot run here, or None."""
    for tool in ("patroni", "etcd"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install patroni etcd-server)"
    try:
        find_binary("initdb")
    except PostgresUnavailable as error:
        return str(error)
    return None


def _as_postgres() -> dict[str, object]:
    return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _signal(pid: int | None, number: signal.Signals) -> None:
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)


class Etcd:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.peer_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> Etcd:
        peer = f"http://127.0.0.1:{self.peer_port}"
        client = f"http://127.0.0.1:{self.port}"
        log = (self.folder / "etcd.log").open("ab")
        self.process = subprocess.Popen(
            [
                "etcd",
                "--name=tokensmith",
                f"--data-dir={self.folder / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=tokensmith={peer}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PatroniUnavailable(f"etcd exited: {(self.folder / 'etcd.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{client}/health", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        raise PatroniUnavailable("etcd did not answer")

    def stop(self) -> None:
        stop_process(self.process)


class Node:
    """One PostgreSQL under its Patroni."""

    def __init__(self, cluster: PatroniCluster, name: str) -> None:
        self.cluster = cluster
        self.name = name
        self.folder = cluster.folder / name
        self.port = free_port()
        self.api_port = free_port()
        self.patroni: subprocess.Popen[bytes] | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def config_path(self) -> Path:
        return self.folder / "patroni.yml"

    @property
    def log_path(self) -> Path:
        return self.folder / "patroni.log"

    def configuration(self) -> str:
        return (
            NODE.format(
                namespace=self.cluster.namespace,
                name=self.name,
                folder=self.folder,
                address="127.0.0.1",
                network="127.0.0.1/32",
                api_port=self.api_port,
                etcd=f"127.0.0.1:{self.cluster.etcd.port}",
                dcs=DCS,
                port=self.port,
                bin_dir=Path(find_binary("pg_ctl"))
                .resolve()
                .parent,  # the symlinks in /usr/local/bin lack pg_controldata
                password=self.cluster.password,
                replication_password=self.cluster.replication_password,
            )
            + '    fsync: "off"  # a test\'s data: not worth syncing (never in production)\n'
        )

    def start(self) -> Node:
        """Start Patroni: it initialises the cluster, or joins it as a replica, or rejoins it."""
        self.folder.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.config_path.write_text(self.configuration())
        self.config_path.chmod(0o600)
        if os.geteuid() == 0:
            shutil.chown(self.config_path, "postgres", "postgres")
        log = self.log_path.open("ab")
        self.patroni = subprocess.Popen(
            ["patroni", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.folder,
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(self.folder)},
            **_as_postgres(),  # type: ignore[arg-type]
        )
        log.close()
        return self

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.folder / "data" / "postmaster.pid").read_text().split()[0])
            return pid if _alive(pid) else None
        return None

    def postgres_pids(self) -> list[int]:
        """The postmaster and every process it forked (backends, WAL sender, checkpointer...)."""
        postmaster = self.postmaster_pid()
        if postmaster is None:
            return []
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                    children.append(int(stat.parent.name))
        return [postmaster, *children]

    def state(self) -> dict:
        """Patroni's own view of this node (GET /patroni), or {} when it does not answer."""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            return httpx.get(f"{self.api}/patroni", timeout=1).json()
        return {}

    def is_leader(self) -> bool:
        return self.state().get("role") in ("master", "primary") and self.state().get("state") == "running"

    def kill(self) -> None:
        """A crash: Patroni and PostgreSQL SIGKILLed, nothing shut down."""
        pids = [self.patroni.pid if self.patroni else None, *self.postgres_pids()]
        for pid in pids:
            _signal(pid, signal.SIGKILL)
        if self.patroni is not None:
            self.patroni.wait(timeout=10)
        self._wait_gone([pid for pid in pids if pid is not None])

    def freeze(self) -> list[int]:
        """A hang: Patroni and every PostgreSQL process stopped (SIGSTOP). Their sockets stay
        open and the kernel goes on accepting connections and acknowledging what is sent; nothing
        answers. Returns the pids, for ``fence``."""
        pids = [self.patroni.pid] if self.patroni else []
        pids += self.postgres_pids()
        for pid in pids:
            _signal(pid, signal.SIGSTOP)
        return pids

    def fence(self, frozen: list[int]) -> None:
        """What a failover manager's fencing (STONITH) does to a hung node: it is killed."""
        for pid in frozen:
            _signal(pid, signal.SIGKILL)
        if self.patroni is not None:
            self.patroni.wait(timeout=10)
        self._wait_gone(frozen)

    def _wait_gone(self, pids: list[int], timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self) -> None:
        """Patroni's own clean stop (it stops PostgreSQL), then whatever is left, by pid."""
        postmaster = self.postmaster_pid()
        stop_process(self.patroni, timeout=30)
        if postmaster is not None and _alive(postmaster):
            _signal(postmaster, signal.SIGQUIT)
            self._wait_gone([postmaster])
            _signal(postmaster, signal.SIGKILL)


class PatroniCluster:
    def __init__(self, nodes: int = 2) -> None:
        reason = missing()
        if reason:
            raise PatroniUnavailable(reason)
        _ensure_postgres_user()
        self.folder = Path(tempfile.mkdtemp(prefix="tokensmith-patroni-"))
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres", "postgres")
        self.namespace = f"tokensmith-{secrets.token_hex(4)}"
        self.password = secrets.token_urlsafe(18)
        self.replication_password = secrets.token_urlsafe(18)
        self.etcd = Etcd(self.folder)
        self.nodes = [Node(self, f"node{number}") for number in range(1, nodes + 1)]

    def url(self, database: str = "postgres") -> str:
        """The multi-host URL the instances are given: libpq tries the hosts in turn and keeps the
        one that takes writes."""
        hosts = "&".join(f"host=127.0.0.1:{node.port}" for node in self.nodes)
        return f"postgresql+psycopg://postgres:{self.password}@/{database}?{hosts}&target_session_attrs=read-write"

    def start(self, timeout: float = 90) -> PatroniCluster:
        """etcd, the first node (which bootstraps and leads), then the others as synchronous
        standbys."""
        try:
            self.etcd.start()
            self.nodes[0].start()
            self.wait_for_leader(timeout)
            for node in self.nodes[1:]:
                node.start()
            self.wait_for_sync_standby(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def leader(self) -> Node | None:
        return next((node for node in self.nodes if node.is_leader()), None)

    def wait_for_leader(self, timeout: float, *, other_than: Node | None = None) -> Node:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for node in self.nodes:
                if node is not other_than and node.is_leader():
                    return node
            self._check_running()
            time.sleep(0.1)
        raise PatroniUnavailable(f"no leader within {timeout}s:\n{self.logs()}")

    def members(self) -> list[dict]:
        for node in self.nodes:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                return httpx.get(f"{node.api}/cluster", timeout=1).json()["members"]
        return []

    def wait_for_sync_standby(self, timeout: float) -> Node:
        """Until a standby streams and is the synchronous one, as Patroni records it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for member in self.members():
                if member.get("role") == "sync_standby" and member.get("state") in ("streaming", "running"):
                    return next(node for node in self.nodes if node.name == member["name"])
            self._check_running()
            time.sleep(0.1)
        raise PatroniUnavailable(f"no synchronous standby within {timeout}s:\n{self.logs()}")

    def _check_running(self) -> None:
        for node in self.nodes:
            if (
                node.patroni is not None
                and node.patroni.poll() is not None
                and node.patroni.returncode not in (-signal.SIGKILL,)
            ):
                raise PatroniUnavailable(f"{node.name}'s Patroni exited:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"--- {node.name}\n{node.log_path.read_text(errors='replace')[-3000:]}"
            for node in self.nodes
            if node.log_path.exists()
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.etcd.stop()

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
