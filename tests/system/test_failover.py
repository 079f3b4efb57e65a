"""PostgreSQL failover under load, managed the way docs/deployment.md deploys it.

Patroni (Debian's) with etcd, two PostgreSQL nodes with synchronous replication
(``synchronous_mode: true``), two ``tokensmith serve`` instances on the multi-host URL
(``?host=…&host=…&target_session_attrs=read-write``) behind nginx, and load running: token checks
and leak reports (wrk), token rotations (a creation and a revocation each), leak reports of live
tokens, checks timed one by one, ``git clone``. Then the primary is killed (its PostgreSQL and
its Patroni) and Patroni promotes the standby; the old primary rejoins as a standby; then the new
primary hangs (every process of it stopped, sockets open) until it is fenced, and the first one
takes over again; last, a switchover with the pools full shows that no stale connection is handed
out. Printed: seconds until writes succeed, requests failed and how, the longest wait, and the
ledger of acknowledged revocations, every one of them still refused.

Real processes only: etcd, Patroni, PostgreSQL, ``tokensmith serve``, nginx, wrk, git.
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.conftest import unavailable
from tests.support.cluster import Cluster
from tests.support.git import GitUser
from tests.support.ledger import remember, watch
from tests.support.patroni import DOCUMENTED, NODE, Node, PatroniCluster, PatroniUnavailable
from tests.support.postgres import find_binary
from tokensmith.accounts import users
from tokensmith.config import load_settings
from tokensmith.store.postgresql import ANSWER_WITHIN_S, CONNECT_TIMEOUT_S
from tokensmith.store.server_keys import load_server_keys
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle

pytestmark = [pytest.mark.postgres, pytest.mark.failover]

FAILOVER_LUA = Path(__file__).resolve().parent.parent / "support" / "failover.lua"
# The longest a request may wait while a primary hangs: one wait for an answer on a connection it
# holds (ANSWER_WITHIN_S) or one connection attempt to the hung host (CONNECT_TIMEOUT_S), then the
# rest of its work on a healthy store (3 s, for a loaded machine). A request that waited for the
# hang itself would wait until the fencing: Patroni promotes the standby only once the hung
# leader's key has expired (ttl, 10 s), and the node is fenced after that.
LONGEST_WAIT_S = max(ANSWER_WITHIN_S, CONNECT_TIMEOUT_S) + 3


@dataclass
class Outcome:
    """What one kind of request got while the load ran: statuses, the longest wait, and 503s
    that did not say when to try again."""

    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    without_retry_after: int = 0
    longest: float = 0.0
    successes: list[tuple[float, float]] = field(default_factory=list)  # (sent, answered)

    def note(self, response: httpx.Response, started: float) -> None:
        ended = time.monotonic()
        self.statuses[response.status_code] += 1
        self.longest = max(self.longest, ended - started)
        if response.status_code == 503 and "retry-after" not in response.headers:
            self.without_retry_after += 1
        if response.status_code < 300:
            self.successes.append((started, ended))

    def back_after(self, since: float) -> float | None:
        """When the first request sent after ``since`` succeeded, in seconds after it."""
        return next((answered - since for sent, answered in self.successes if sent > since), None)

    def failed(self) -> dict[int, int]:
        return {status: count for status, count in sorted(self.statuses.items()) if status >= 300}


@dataclass
class Load:
    """Load through nginx while a failover happens; stopped and summed up by ``finish``."""

    url: str
    live_token: str
    spare: list[str]
    git: GitUser
    workdir: Path
    stop: threading.Event = field(default_factory=threading.Event)
    checks: Outcome = field(default_factory=Outcome)
    rotations: Outcome = field(default_factory=Outcome)
    reports: Outcome = field(default_factory=Outcome)
    clones: collections.Counter[str] = field(default_factory=collections.Counter)
    revoked: list[str] = field(default_factory=list)  # the ledger: acknowledged revocations
    threads: list[threading.Thread] = field(default_factory=list)
    wrk: subprocess.Popen[str] | None = None

    def start(self) -> Load:
        unknown = remember(token_format.generate("tks_"))
        self.wrk = subprocess.Popen(
            [
                "wrk",
                "-t2",
                "-c8",
                "-d300s",
                "--timeout",
                "60s",
                "-s",
                str(FAILOVER_LUA),
                f"{self.url}/",
                "--",
                self.live_token,
                unknown,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for work in (self._check, self._rotate, self._report, self._clone):
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def _client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120)

    def _check(self) -> None:
        with self._client() as client:
            while not self.stop.is_set():
                started = time.monotonic()
                self.checks.note(client.get("/api/v1/me", headers=bearer(self.live_token)), started)

    def _rotate(self) -> None:
        """A chain of rotations: each creates a token and revokes the one that asked."""
        with self._client() as client:
            current = self.spare.pop()
            current_id = client.get("/api/v1/me", headers=bearer(current)).json()["token"]["id"]
            while not self.stop.is_set():
                started = time.monotonic()
                answer = client.post(f"/api/v1/tokens/{current_id}/rotate", headers=bearer(current))
                self.rotations.note(answer, started)
                if answer.status_code == 201:
                    self.revoked.append(current)
                    current, current_id = remember(answer.json()["token"]), answer.json()["id"]
                elif answer.status_code == 401:
                    # A rotation that landed although its answer was lost (a commit the primary
                    # made as it died): the chain goes on from a spare token.
                    current = self.spare.pop()
                    current_id = client.get("/api/v1/me", headers=bearer(current)).json()["token"]["id"]
                else:
                    time.sleep(0.05)

    def _report(self) -> None:
        """Leak reports of live tokens: each acknowledged one must stay revoked."""
        with self._client() as client:
            while not self.stop.is_set() and len(self.spare) > 5:
                token = self.spare.pop()
                while not self.stop.is_set():
                    started = time.monotonic()
                    answer = client.post("/api/v1/tokens/revoke", json={"tokens": [token]})
                    self.reports.note(answer, started)
                    if answer.status_code == 202:
                        self.revoked.append(token)
                        break
                    time.sleep(0.05)
                time.sleep(0.1)

    def _clone(self) -> None:
        number = 0
        while not self.stop.is_set():
            number += 1
            target = self.workdir / f"clone-{number}"
            done = self.git.git("clone", "-q", f"{self.url}/git/demo.git", str(target), check=False)
            self.clones["ok" if done.returncode == 0 else "failed"] += 1
            shutil.rmtree(target, ignore_errors=True)
            if done.returncode != 0:
                time.sleep(0.2)

    def finish(self) -> dict[str, object]:
        self.stop.set()
        for thread in self.threads:
            thread.join(180)
        assert self.wrk is not None
        self.wrk.send_signal(signal.SIGINT)
        output, _ = self.wrk.communicate(timeout=60)
        statuses = {
            int(status): int(count)
            for status, count in re.findall(r"(\d+)=(\d+)", re.search(r"failover-statuses:(.*)", output).group(1))
        }
        errors = {
            kind: int(count)
            for kind, count in re.findall(r"(\w+)=(\d+)", re.search(r"failover-errors:(.*)", output).group(1))
        }
        bare = int(re.search(r"failover-503-without-retry-after: (\d+)", output).group(1))
        return {"statuses": statuses, "errors": errors, "without_retry_after": bare}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Fleet:
    patroni: PatroniCluster
    cluster: Cluster
    user: str
    live_token: str
    git: GitUser

    def load(self, workdir: Path, spare: int = 60) -> Load:
        instance = self.cluster.instances[0]
        keys = load_server_keys(load_settings(instance.env))
        with instance.store() as session:
            owner = users.get_user(session, self.user).id
            tokens = [
                remember(
                    token_lifecycle.create_token(
                        session, keys, owner, f"spare {uuid.uuid4().hex[:8]}", prefix="tks_", actor="tests"
                    )[0]
                )
                for _ in range(spare)
            ]
        return Load(self.cluster.url, self.live_token, tokens, self.git, workdir).start()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[Fleet]:
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists():
            unavailable(f"{tool} is not installed")
    try:
        patroni = PatroniCluster().start()
    except PatroniUnavailable as error:
        unavailable(f"Patroni cannot run here: {error}")
    cluster = None
    try:
        base = tmp_path_factory.mktemp("failover")
        cluster = Cluster(
            base, patroni.url(), count=2, env={"TOKENSMITH_SECRET_KEY": "1:" + "f" * 40}, measured=False
        ).start(timeout=90)
        user = f"fleet-{uuid.uuid4().hex[:6]}"
        cluster.instances[0].create_user(user)
        admin_token = cluster.instances[0].create_token("admin", "clones")
        git = GitUser(base / "git", "admin", admin_token)
        git.remember_credentials(cluster.url)
        yield Fleet(patroni, cluster, user, cluster.instances[0].create_token(user, "live"), git)
        keep_for_the_ledger(patroni, base)
    finally:
        if cluster is not None:
            cluster.stop()
        patroni.remove()


def keep_for_the_ledger(patroni: PatroniCluster, folder: Path) -> None:
    """The database and the logs, kept where the last test of the run reads them for secrets:
    this PostgreSQL is gone by then."""
    leader = patroni.leader()
    if leader is not None:
        dump = subprocess.run(
            [find_binary("pg_dump"), "--data-only", "-h", "127.0.0.1", "-p", str(leader.port), "-U", "postgres"],
            env={**os.environ, "PGPASSWORD": patroni.password},
            capture_output=True,
            timeout=120,
            check=True,
        )
        watch(folder / "failover.sql").write_bytes(dump.stdout)
    for node in patroni.nodes:
        if node.log_path.exists():
            shutil.copy(node.log_path, watch(folder / f"{node.name}.log"))


def still_refused(fleet: Fleet, revoked: list[str]) -> list[str]:
    """The acknowledged revocations that a check through the proxy does not refuse."""
    accepted = []
    with httpx.Client(base_url=fleet.cluster.url, timeout=60) as client:
        for token in revoked:
            answer = client.get("/api/v1/me", headers=bearer(token))
            if answer.status_code != 401 or answer.json()["error"] not in ("token_revoked", "token_replaced"):
                accepted.append(f"{answer.status_code} {answer.text[:80]}")
    return accepted


def report(title: str, load: Load, wrk: dict[str, object], events: dict[str, float]) -> None:
    print(f"\n{title}")
    for name, moment in events.items():
        print(f"  {name}: {moment:.1f} s")
    for name, outcome in (("checks", load.checks), ("rotations", load.rotations), ("leak reports", load.reports)):
        print(
            f"  {name}: {sum(outcome.statuses.values())} sent, failed {outcome.failed() or 'none'}, "
            f"{outcome.without_retry_after} × 503 without Retry-After, longest wait {outcome.longest:.1f} s"
        )
    print(f"  wrk (checks and leak reports): {wrk['statuses']}, socket errors {wrk['errors']}")
    print(f"  git clone: {dict(load.clones)}")
    print(f"  ledger: {len(load.revoked)} acknowledged revocations, every one refused afterwards")


def assert_held(fleet: Fleet, load: Load, wrk: dict[str, object]) -> None:
    """What a failover must never do, whatever it costs in 503s."""
    for outcome in (load.checks, load.rotations, load.reports):
        assert set(outcome.failed()) <= {503}, outcome.failed()  # never a 401 for a live token, never a 500
        assert outcome.without_retry_after == 0
    assert set(wrk["statuses"]) <= {200, 202, 503}, wrk["statuses"]
    assert wrk["without_retry_after"] == 0
    assert sum(wrk["errors"].values()) == 0, wrk["errors"]
    assert load.clones["ok"] > 0
    assert len(load.revoked) > 10
    assert still_refused(fleet, load.revoked) == []
    for instance in fleet.cluster.instances:  # no instance restarted, none failed
        assert instance.process.poll() is None
        assert "Traceback" not in instance.console()


def wait_for_writes(load: Load, since: float, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while (back := load.rotations.back_after(since)) is None:
        assert time.monotonic() < deadline, f"no write succeeded within {timeout}s: {load.rotations.statuses}"
        time.sleep(0.1)
    return back


def steady(load: Load, seconds: float = 1.5) -> None:
    """Let the load run long enough for the pools to fill, and check it does succeed."""
    time.sleep(seconds)
    assert load.checks.successes and load.rotations.successes, (load.checks.statuses, load.rotations.statuses)


def test_a_primary_killed_under_load_is_replaced_and_rejoins_as_a_standby(fleet, tmp_path):
    old = fleet.patroni.leader()
    assert old is not None
    load = fleet.load(tmp_path)
    steady(load)
    killed = time.monotonic()
    old.kill()
    new = fleet.patroni.wait_for_leader(60, other_than=old)
    promoted = time.monotonic() - killed
    writes = wait_for_writes(load, killed)
    time.sleep(2)
    wrk = load.finish()
    report(
        f"kill -9 of the primary ({old.name}, PostgreSQL and Patroni) under load; {new.name} promoted",
        load,
        wrk,
        {"promoted by Patroni after": promoted, "writes succeed again after": writes},
    )
    assert_held(fleet, load, wrk)

    old.start()  # the old primary comes back: Patroni rewinds it and makes it a standby
    assert fleet.patroni.wait_for_sync_standby(90) is old
    assert fleet.patroni.leader() is new


def test_after_a_switch_no_pool_hands_out_a_stale_connection(fleet):
    """Pools as full as they get at their real sizes, then a switchover: requests that follow
    find every pooled connection to the old primary replaced, none failed for it."""
    instance = fleet.cluster.instances[1]
    old = fleet.patroni.leader()
    standby = fleet.patroni.wait_for_sync_standby(90)
    assert old is not None

    def check(_: int) -> int:
        return httpx.get(f"{instance.base_url}/api/v1/me", headers=bearer(fleet.live_token), timeout=60).status_code

    def unit(_: int) -> int:  # a unit of work: the session pool's
        return httpx.get(f"{instance.base_url}/api/v1/tokens", headers=bearer(fleet.live_token), timeout=60).status_code

    with ThreadPoolExecutor(max_workers=70) as pool:
        filled = list(pool.map(lambda n: (check if n % 2 else unit)(n), range(700)))
    assert set(filled) == {200}
    port = old.port
    kept = connections_from_instances(fleet, old)
    answer = httpx.post(f"{old.api}/switchover", json={"leader": old.name, "candidate": standby.name}, timeout=60)
    assert answer.status_code == 200, answer.text
    fleet.patroni.wait_for_leader(60, other_than=old)
    checks = [check(n) for n in range(60)]
    units = [unit(n) for n in range(60)]
    print(
        f"\nswitchover {old.name} -> {standby.name} with {kept} connections of the instances open on {old.name} "
        f"(port {port}): the next 60 token checks got {collections.Counter(checks)}, "
        f"the next 60 units of work {collections.Counter(units)}"
    )
    assert sum(status != 200 for status in checks) <= 1
    assert sum(status != 200 for status in units) <= 1


def test_a_primary_that_hangs_keeps_no_request_waiting_and_is_replaced_once_fenced(fleet, tmp_path):
    hung = fleet.patroni.leader()
    assert hung is not None and fleet.patroni.wait_for_sync_standby(90) is not hung
    load = fleet.load(tmp_path)
    steady(load)
    frozen_at = time.monotonic()
    frozen = hung.freeze()
    try:
        new = fleet.patroni.wait_for_leader(60, other_than=hung)
        promoted = time.monotonic() - frozen_at
    finally:
        hung.fence(frozen)
    fenced = time.monotonic() - frozen_at
    writes = wait_for_writes(load, frozen_at)
    time.sleep(2)
    wrk = load.finish()
    report(
        f"{hung.name} hangs (SIGSTOP of PostgreSQL and Patroni) under load; {new.name} promoted; "
        f"{hung.name} fenced (SIGKILL) {fenced:.0f} s after it hung",
        load,
        wrk,
        {"promoted by Patroni after": promoted, "writes succeed again after": writes},
    )
    assert_held(fleet, load, wrk)
    longest = max(outcome.longest for outcome in (load.checks, load.rotations, load.reports))
    print(
        f"  the longest any request waited: {longest:.1f} s "
        f"(bound {LONGEST_WAIT_S:g} s; the hang lasted {fenced:.0f} s)"
    )
    assert longest < LONGEST_WAIT_S < fenced


def test_the_configuration_the_deployment_guide_shows_is_the_one_tested():
    guide = (Path(__file__).resolve().parents[2] / "docs" / "deployment.md").read_text()
    shown = re.search(r"#### Patroni and etcd, as tested\n.*?```yaml\n(.*?)```", guide, re.DOTALL)
    assert shown is not None
    assert shown.group(1) == NODE.format(**DOCUMENTED)


def connections_from_instances(fleet: Fleet, node: Node) -> int:
    import psycopg

    with psycopg.connect(
        host="127.0.0.1", port=node.port, user="postgres", password=fleet.patroni.password, dbname="postgres"
    ) as connection:
        return connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()[0]
