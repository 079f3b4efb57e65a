"""Token checks on a real streaming replica (TOKENSMITH_REPLICA_DATABASE_URL).

The primary's commits wait until the replica has applied them (synchronous_commit =
remote_apply, which the server asks for on its own connections), so a revocation is refused
by the replica on the very next request; without it, a lagging replica goes on accepting a
revoked token — shown here by pausing the replica's replay.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid

import httpx
import pytest

from tests.conftest import unavailable
from tests.support.ledger import watch
from tests.support.postgres import PostgresServer, PostgresUnavailable
from tests.support.servers import LiveServer, ServerFailed

pytestmark = pytest.mark.postgres

STANDBY = "tokensmith_replica"


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    """A primary that waits for its synchronous standby, and that standby, streaming."""
    primary = PostgresServer(settings={"synchronous_standby_names": STANDBY})
    replica = None
    try:
        try:
            primary.init().start()
            primary.execute("CREATE DATABASE tokensmith_replicated")
            replica = primary.replica(STANDBY)
            replica.start()
        except (PostgresUnavailable, OSError) as error:
            unavailable(f"PostgreSQL replication cannot start here: {error}")
        deadline = time.monotonic() + 30
        while (
            primary.execute(f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{STANDBY}'")
            != [("sync",)]
            and time.monotonic() < deadline
        ):
            time.sleep(0.1)
        assert replica.execute("SELECT pg_is_in_recovery()") == [(True,)]
        yield primary, replica
        keep_for_the_ledger(primary, tmp_path_factory.mktemp("replicated-kept"))
    finally:
        if replica is not None:
            replica.remove()
        primary.remove()


def keep_for_the_ledger(primary: PostgresServer, folder) -> None:
    """The database and the log, kept where the last test of the run reads them for secrets:
    this PostgreSQL is gone by then."""
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-h",
            "127.0.0.1",
            "-p",
            str(primary.port),
            "-U",
            "postgres",
            "tokensmith_replicated",
        ],
        env={**os.environ, "PGPASSWORD": primary.password},
        capture_output=True,
        timeout=120,
        check=True,
    )
    (folder / "tokensmith_replicated.sql").write_bytes(dump.stdout)
    watch(folder / "tokensmith_replicated.sql")
    shutil.copy(primary.log_path, folder / "primary.log")
    watch(folder / "primary.log")


def start(tmp_path, primary: PostgresServer, replica: PostgresServer | None, name: str) -> LiveServer:
    env = {
        "TOKENSMITH_DATABASE_URL": primary.url_for("tokensmith_replicated"),
        "TOKENSMITH_SECRET_KEY": "1:" + "r" * 40,
    }
    if replica is not None:
        env["TOKENSMITH_REPLICA_DATABASE_URL"] = replica.url_for("tokensmith_replicated")
    return LiveServer(tmp_path / "data", env=env, name=name).start()


def me(live: LiveServer, token: str) -> httpx.Response:
    return httpx.get(f"{live.base_url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def revoke(live: LiveServer, token: str, token_id: int) -> int:
    return httpx.delete(
        f"{live.base_url}/api/v1/tokens/{token_id}", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ).status_code


@pytest.fixture(scope="module")
def on_replica(replicated, tmp_path_factory):
    primary, replica = replicated
    live = start(tmp_path_factory.mktemp("replica-checks"), primary, replica, "replica-checks")
    yield live
    live.stop()


def test_a_revocation_is_refused_on_the_replica_at_the_very_next_request(replicated, on_replica):
    _primary, replica = replicated
    user = f"replicated-{uuid.uuid4().hex[:6]}"
    on_replica.create_user(user)
    checks_before = replica.execute(
        "SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database WHERE datname = 'tokensmith_replicated'"
    )[0][0]
    timings = []
    for round_number in range(25):
        token = on_replica.create_token(user, f"round {round_number}")
        first = me(on_replica, token)
        assert first.status_code == 200
        started = time.perf_counter()
        assert revoke(on_replica, token, first.json()["token"]["id"]) == 204
        timings.append(time.perf_counter() - started)
        refused = me(on_replica, token)
        assert refused.status_code == 401 and refused.json()["error"] == "token_revoked", refused.text
    checks_after = replica.execute(
        "SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database WHERE datname = 'tokensmith_replicated'"
    )[0][0]
    assert checks_after - checks_before >= 50  # the checks were read there: two a round at least
    print(f"\nrevocation with remote_apply: median {sorted(timings)[len(timings) // 2] * 1000:.1f} ms")


def test_the_primary_answers_a_revocation_only_once_the_replica_has_applied_it(replicated, on_replica, tmp_path):
    primary, replica = replicated
    user = f"paused-{uuid.uuid4().hex[:6]}"
    on_replica.create_user(user)
    token = on_replica.create_token(user, "paused")
    token_id = me(on_replica, token).json()["token"]["id"]
    outcome: list[int] = []
    replica.execute("SELECT pg_wal_replay_pause()")
    try:
        revoking = threading.Thread(target=lambda: outcome.append(revoke(on_replica, token, token_id)))
        revoking.start()
        revoking.join(2)
        assert revoking.is_alive() and outcome == []  # waiting for the replica
    finally:
        replica.execute("SELECT pg_wal_replay_resume()")
    revoking.join(30)
    assert outcome == [204]
    assert me(on_replica, token).status_code == 401

    # Without remote_apply (an instance that knows of no replica commits locally), the same
    # pause lets a revoked token through on the replica: what the setting is for.
    local = start(tmp_path, primary, None, "local-commits")
    try:
        stale = on_replica.create_token(user, "stale")
        stale_id = me(on_replica, stale).json()["token"]["id"]
        # Its "last used" lands first: written with remote_apply, it would hold the token's row
        # until the replay resumes, and the revocation below would wait for it.
        assert on_replica.used_token_row(user, "stale").last_used_at is not None
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            assert revoke(local, stale, stale_id) == 204
            assert me(local, stale).status_code == 401  # the primary knows
            assert me(on_replica, stale).status_code == 200  # the lagging replica does not
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
    finally:
        local.stop()


def test_a_replica_without_a_synchronous_standby_is_refused_at_start(postgres, tmp_path):
    live = LiveServer(
        tmp_path / "data",
        name="unsynchronised",
        env={"TOKENSMITH_DATABASE_URL": postgres.url, "TOKENSMITH_REPLICA_DATABASE_URL": postgres.url},
    )
    with pytest.raises(ServerFailed):
        live.start(timeout=30)
    assert "synchronous_standby_names" in live.console()
