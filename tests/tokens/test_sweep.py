"""The sweep: unused tokens retired and their owners told, a week before and when it happens, once
for each spell of disuse, on both stores with the clock given; rounds that take turns on SQLite;
and, end to end, two instances on one PostgreSQL and the shell's `tokens sweep` at once, a real
SMTP server receiving what the owners are told: each token retired and told once."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from tests.conftest import mailing_instances
from tests.support.ledger import remember, watch
from tests.support.smtp import text_of, to
from tokensmith.accounts import users
from tokensmith.audit import trail
from tokensmith.clock import utcnow
from tokensmith.config import Settings, load_settings
from tokensmith.store.database import create_store_engine, migrate, session_factory, unit_of_work
from tokensmith.store.models import AuditEvent, MailOutbox, PersonalToken, TokenReminder
from tokensmith.store.server_keys import load_server_keys
from tokensmith.tokens import application_tokens
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import sweep as token_sweep
from tokensmith.tokens.application_tokens import Application

AFTER = 90
SETTINGS = Settings(revoke_unused_after_days=AFTER)


def aged(row: PersonalToken, *, created_days_ago: float, used_days_ago: float | None = None) -> PersonalToken:
    now = utcnow()
    row.created_at = now - timedelta(days=created_days_ago)
    row.last_used_at = None if used_days_ago is None else now - timedelta(days=used_days_ago)
    return row


def events_of(db, owner_id: int, action: str) -> list[AuditEvent]:
    db.flush()
    return list(db.scalars(select(AuditEvent).where(AuditEvent.user_id == owner_id, AuditEvent.action == action)))


def test_tokens_unused_for_the_limit_are_revoked_and_those_due_within_a_week_warned_once(
    db, make_user, make_token, mail_on
):
    owner = make_user()
    stale = aged(make_token(owner, "stale")[1], created_days_ago=400, used_days_ago=100)
    never = aged(make_token(owner, "never used")[1], created_days_ago=95)
    soon = aged(make_token(owner, "due soon")[1], created_days_ago=200, used_days_ago=85)
    fresh = aged(make_token(owner, "fresh")[1], created_days_ago=200, used_days_ago=10)
    ended = aged(make_token(owner, "expired", expires_at=utcnow() + timedelta(days=1))[1], created_days_ago=120)
    ended.expires_at = utcnow() - timedelta(days=1)
    db.flush()
    now = utcnow()

    done = token_sweep.sweep_round(db, SETTINGS, now)
    assert (done.revoked, done.warned) == (2, 1)
    for row in (stale, never, soon, fresh, ended):
        db.refresh(row)
    assert stale.revoked_reason == never.revoked_reason == "unused"
    assert soon.revoked_at is fresh.revoked_at is ended.revoked_at is None
    revoked = sorted(
        (event.details["name"], event.details["unused_since"], event.actor)
        for event in events_of(db, owner.id, "token.revoked")
    )
    assert revoked == [
        ("never used", f"{never.created_at:%Y-%m-%d}", "unused-token policy"),
        ("stale", f"{stale.last_used_at:%Y-%m-%d}", "unused-token policy"),
    ]
    [warning] = events_of(db, owner.id, "token.unused_warning")
    assert warning.details["revoke_on"] == f"{soon.last_used_at + timedelta(days=AFTER):%Y-%m-%d}"
    words = trail.describe(warning)
    assert words.startswith("Token “due soon” has not been used since ") and "unless it is used" in words
    assert trail.needs_attention(warning)
    # The owner's mail: one about both revocations, one warning.
    queued = {row.kind: row for row in db.scalars(select(MailOutbox).where(MailOutbox.user_id == owner.id))}
    assert "2 of your tokens were revoked because it was not used" in queued["token.revoked"].subject
    assert "revokes tokens that nobody has used for 90 days" in " ".join(queued["token.revoked"].body.split())
    assert queued["token.unused_warning"].subject.startswith("Tokensmith: your token “due soon” will be revoked on ")

    # Nothing twice: the next rounds find nothing to do.
    assert (token_sweep.sweep_round(db, SETTINGS, now).revoked, token_sweep.sweep_round(db, SETTINGS, now).warned) == (
        0,
        0,
    )
    # Used after its warning, the token starts a new spell: warned again when that one nears its end.
    soon.last_used_at = now + timedelta(days=1)
    db.flush()
    assert token_sweep.sweep_round(db, SETTINGS, now + timedelta(days=2)).warned == 0
    assert token_sweep.sweep_round(db, SETTINGS, now + timedelta(days=1 + 84)).warned == 1
    assert token_sweep.sweep_round(db, SETTINGS, now + timedelta(days=1 + 85)).warned == 0
    assert token_sweep.sweep_round(db, SETTINGS, now + timedelta(days=1 + 90)).revoked == 1
    assert len(events_of(db, owner.id, "token.unused_warning")) == 2


def test_without_a_limit_nothing_is_revoked_and_an_application_token_goes_unused_on_its_own(
    db, keys, make_user, make_token
):
    owner = make_user()
    _secret, parent = make_token(owner, "laptop")
    child_secret, child = application_tokens.derive_token(
        db, keys, parent.id, owner.id, Application("nuxeo-cli", "1"), prefix="tks_", actor=owner.username, ip=None
    )
    remember(child_secret)
    aged(parent, created_days_ago=300, used_days_ago=1)
    aged(child, created_days_ago=300)
    db.flush()
    assert token_sweep.sweep_round(db, Settings(), utcnow()).revoked == 0
    assert token_sweep.sweep_round(db, SETTINGS, utcnow()).revoked == 1
    db.refresh(child)
    db.refresh(parent)
    assert child.revoked_reason == "unused" and parent.revoked_at is None


# --- rounds taking turns, on SQLite -------------------------------------------------------------


@pytest.fixture
def sqlite_store(tmp_path) -> Iterator:
    settings = Settings(data_dir=tmp_path, revoke_unused_after_days=AFTER)
    watch(tmp_path / "tokensmith.db")
    engine = create_store_engine(settings)
    migrate(engine)
    yield settings, engine
    engine.dispose()


def test_the_job_and_the_shells_command_sweep_in_turn_and_revoke_each_token_once(sqlite_store, monkeypatch):
    monkeypatch.setattr(token_sweep, "BATCH", 10)  # rounds of ten: the job goes on until one is not full
    settings, engine = sqlite_store
    sessions = session_factory(engine)
    with unit_of_work(sessions) as session:
        owner = users.create_user(session, "old-timer", "old@example.test", actor="tests")
        for number in range(token_sweep.BATCH + 20):  # more than one round's batch
            secret, row = token_lifecycle.create_token(
                session, load_server_keys(settings), owner.id, f"t{number}", prefix="tks_", actor="tests"
            )
            remember(secret)
            aged(row, created_days_ago=200)
    job = token_sweep.Sweep(engine, settings)
    job.round()  # rounds until one has less than a batch: all of them
    with unit_of_work(sessions) as session:
        assert token_sweep.sweep_in(session, settings).revoked == 0
        revoked = session.scalar(
            select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "token.revoked")
        )
        live = session.scalar(select(func.count()).select_from(PersonalToken).where(PersonalToken.revoked_at.is_(None)))
    assert (revoked, live) == (token_sweep.BATCH + 20, 0)


# --- two instances and the shell on one PostgreSQL, end to end ---------------------------------------


@pytest.mark.postgres
def test_two_instances_and_the_shell_sweeping_one_postgresql_retire_and_tell_each_token_once(postgres, smtp, tmp_path):
    with mailing_instances(
        postgres, smtp, tmp_path / "shared", "sweeper", TOKENSMITH_REVOKE_UNUSED_AFTER_DAYS=str(AFTER)
    ) as instances:
        names = [f"sleepy-{uuid.uuid4().hex[:6]}" for _ in range(3)]
        settings = load_settings(instances[0].env)
        with instances[0].store() as session:  # made and aged in one transaction: no sweep sees them half made
            for name in names:
                owner = users.create_user(session, name, f"{name}@example.test", actor="tests")
                for number, (created, used) in enumerate([(400, 100), (200, None), (300, 95), (150, 91), (200, 86)]):
                    secret, row = token_lifecycle.create_token(
                        session, load_server_keys(settings), owner.id, f"token {number}", prefix="tks_", actor="tests"
                    )
                    remember(secret)
                    aged(row, created_days_ago=created, used_days_ago=used)
        with ThreadPoolExecutor(2) as pool:  # the shell's, meanwhile, on both machines at once
            shell = list(pool.map(lambda instance: instance.cli("tokens", "sweep"), instances))
        for name in names:
            revoked = smtp.mailbox.wait_for(
                lambda m, name=name: m["To"] == f"{name}@example.test" and "were revoked" in m["Subject"]
            )
            warned = smtp.mailbox.wait_for(
                lambda m, name=name: m["To"] == f"{name}@example.test" and "unless" in m["Subject"]
            )
            assert "4 of your tokens were revoked" in revoked[0]["Subject"]
            assert "“token 4”" in warned[0]["Subject"] and "unused since" in " ".join(text_of(warned[0]).split())
        time.sleep(1)  # ten more rounds of each instance: a second notice would come now
        for name in names:
            assert len(smtp.mailbox.matching(to(f"{name}@example.test"))) == 2
        with instances[0].store() as session:
            events = session.execute(
                select(AuditEvent.action, func.count())
                .where(AuditEvent.actor == token_sweep.ACTOR)
                .group_by(AuditEvent.action)
            ).all()
            reminders = session.scalar(
                select(func.count()).select_from(TokenReminder).where(TokenReminder.kind == token_sweep.UNUSED)
            )
        assert dict(events) == {"token.revoked": 12, "token.unused_warning": 3} and reminders == 3
        for result in shell:
            assert result.returncode == 0, result.stderr
            assert result.stderr.startswith("Swept: revoked ") and "unused for 90 days" in result.stderr
