"""The embedded store's writers take turns, its event-loop connection only reads, and its log
is checkpointed by a thread of its own."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import exc, select, text

from tokensmith.audit import trail
from tokensmith.config import Settings
from tokensmith.store.database import create_check_engine, create_store_engine, migrate, session_factory, unit_of_work
from tokensmith.store.models import CHECK_COLUMNS, AuditEvent
from tokensmith.store.sqlite import CHECK_CACHE_KIB, WalCheckpointer
from tokensmith.tokens import check as token_check


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path / "var")
    engine = create_store_engine(settings)
    migrate(engine)
    engine.dispose()
    return settings


def test_concurrent_writers_queue_instead_of_failing_on_the_lock(settings):
    """SQLite's own wait cut to 1 ms: without the queue most of these transactions fail with
    'database is locked'; with it every one lands."""
    engine = create_store_engine(settings, busy_timeout_ms=1)
    factory = session_factory(engine)
    failures: list[BaseException] = []

    def write(worker: int) -> None:
        for number in range(40):
            try:
                with unit_of_work(factory) as session:
                    trail.record(session, "test.write", actor=f"worker {worker}", number=number)
                    session.flush()
                    session.execute(text("SELECT count(*) FROM audit_events")).scalar()  # hold the turn a while
            except Exception as error:  # noqa: BLE001 - every failure is the finding
                failures.append(error)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with unit_of_work(factory) as session:
        written = len(session.scalars(select(AuditEvent).where(AuditEvent.action == "test.write")).all())
    engine.dispose()
    assert failures == [] and written == 8 * 40


def test_a_turn_is_given_back_however_the_transaction_ends(settings):
    engine = create_store_engine(settings, busy_timeout_ms=1)
    factory = session_factory(engine)
    with pytest.raises(RuntimeError), unit_of_work(factory) as session:
        trail.record(session, "test.undone", actor="tests")
        session.flush()
        raise RuntimeError("the route failed after writing")
    session = factory()
    trail.record(session, "test.abandoned", actor="tests")
    session.flush()
    session.close()  # neither committed nor rolled back: the connection goes back to the pool
    with unit_of_work(factory) as session:  # would wait 5 s, then fail, were a turn still held
        trail.record(session, "test.after", actor="tests")
    engine.dispose()


def test_the_event_loops_connection_refuses_to_write(settings):
    engine = create_check_engine(settings)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM users")).scalar() >= 0
        with pytest.raises(exc.OperationalError, match="readonly"):
            connection.execute(text("DELETE FROM audit_events"))
        # Its page cache holds the digest index of a million tokens (bench/check_scale.py).
        assert connection.exec_driver_sql("PRAGMA cache_size").scalar() == -CHECK_CACHE_KIB == -64 * 1024
    engine.dispose()


def test_the_log_is_checkpointed_by_its_own_thread(settings):
    engine = create_store_engine(settings, checkpoints=False)
    with unit_of_work(session_factory(engine)) as session:
        for number in range(200):
            trail.record(session, "test.bulk", actor="tests", number=number, padding="x" * 500)
    wal = Path(f"{settings.sqlite_path}-wal")
    with engine.connect() as connection:
        before = connection.exec_driver_sql("PRAGMA wal_checkpoint(NOOP)").fetchone()
    assert wal.stat().st_size > 0 and before[1] > 0  # frames in the log, none moved by a commit
    checkpointer = WalCheckpointer(engine, interval=0.05).start()
    checkpointer.stop()
    with engine.connect() as connection:
        _busy, log_frames, checkpointed = connection.exec_driver_sql("PRAGMA wal_checkpoint(NOOP)").fetchone()
    assert checkpointed == log_frames
    engine.dispose()


def test_the_token_check_reads_one_index_and_never_the_table(settings):
    """Among a million tokens, every page the check touches is one SQLite may have to read again
    after a commit elsewhere: the lookup reads the index made for it alone (migration 0013)."""
    assert set(token_check._TOKEN_FIELDS) - {"id"} | {"digest", "user_id"} == set(CHECK_COLUMNS)
    engine = create_check_engine(settings)
    with engine.connect() as connection:
        plan = " | ".join(
            row[3]
            for row in connection.exec_driver_sql("EXPLAIN QUERY PLAN " + token_check._BY_DIGEST_SQLITE, (b"\0" * 32,))
        )
    engine.dispose()
    assert "SEARCH personal_tokens USING COVERING INDEX ix_personal_tokens_check (digest=?)" in plan, plan
