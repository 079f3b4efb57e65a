"""The revocation journal: every way a token ends (and an account is disabled) is written apart
from the store when it commits, never a secret; replayed into a store that still has them live
(a restore from an older backup), exactly those are revoked again, and nothing else."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tests.conftest import TEST_KEY
from tests.support.ledger import remember, watch
from tokensmith.accounts import users
from tokensmith.audit.trail import RevokeReason
from tokensmith.backups import revocation_journal
from tokensmith.config import Settings
from tokensmith.store.database import create_store_engine, migrate, session_factory, unit_of_work
from tokensmith.store.models import AuditEvent, PersonalToken, User
from tokensmith.store.server_keys import parse_keys
from tokensmith.tokens import lifecycle as token_lifecycle

KEYS = parse_keys(TEST_KEY)


class Store:
    def __init__(self, folder: Path) -> None:
        self.settings = Settings(data_dir=folder / "data", revocation_journal=folder / "journal")
        watch(folder / "data" / "tokensmith.db")
        self.engine: Engine = create_store_engine(self.settings)
        migrate(self.engine)

    def unit(self) -> Iterator[Session]:
        return unit_of_work(session_factory(self.engine))

    def token(self, owner: User, name: str, session: Session) -> tuple[str, PersonalToken]:
        secret, row = token_lifecycle.create_token(session, KEYS, owner.id, name, prefix="tks_", actor="tests")
        return remember(secret), row

    def lines(self) -> list[dict]:
        folder = self.settings.revocation_journal_dir
        return [json.loads(line) for file in sorted(folder.glob("*.jsonl")) for line in file.read_text().splitlines()]

    def copy_to(self, folder: Path) -> Store:
        """The store as it is now, elsewhere: what a backup taken now would restore."""
        target = Store.__new__(Store)
        target.settings = Settings(data_dir=folder, revocation_journal=folder / "journal")
        folder.mkdir()
        source = sqlite3.connect(self.settings.sqlite_path)
        copy = sqlite3.connect(folder / "tokensmith.db")
        source.backup(copy)
        copy.close()
        source.close()
        watch(folder / "tokensmith.db")
        target.engine = create_store_engine(target.settings)
        return target


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    made = Store(tmp_path)
    revocation_journal.listen(made.settings)
    yield made
    revocation_journal.stop()
    made.engine.dispose()


def test_every_way_a_token_ends_is_journaled_when_it_commits_without_a_secret(store: Store) -> None:
    with store.unit() as session:
        owner = users.create_user(session, "jo", "jo@example.test", actor="tests")
        other = users.create_user(session, "kim", "kim@example.test", actor="tests")
        secrets = {}
        for name in ("laptop", "rotated", "leaked", "found", "unused", "ci"):
            secrets[name], _row = store.token(owner, name, session)
        secrets["kim's"], _row = store.token(other, "kim's", session)
    assert store.lines() == []  # making tokens is no revocation

    with store.unit() as session:
        laptop = session.scalars(select(PersonalToken).where(PersonalToken.name == "laptop")).one()
        token_lifecycle.revoke_token(session, laptop.id, laptop.user_id, actor="jo")
        rotated = session.scalars(select(PersonalToken).where(PersonalToken.name == "rotated")).one()
        new_secret, _new = token_lifecycle.rotate_token(
            session, KEYS, rotated.id, rotated.user_id, prefix="tks_", actor="jo", presented_token_id=rotated.id
        )
        remember(new_secret)
        token_lifecycle.revoke_reported_tokens(session, KEYS, [secrets["leaked"]], prefix="tks_", ip=None)
        found = session.scalars(select(PersonalToken).where(PersonalToken.name == "found")).one()
        token_lifecycle.revoke_found_tokens(
            session,
            [(found, {"url": "https://github.com/a/b/blob/main/x"})],
            actor="GitHub secret scanning",
            reason=RevokeReason.SECRET_SCANNING,
            ip=None,
        )
        unused = session.scalars(select(PersonalToken).where(PersonalToken.name == "unused")).one()
        token_lifecycle.revoke_unused_tokens(session, [(unused, {"after_days": 90})], actor="sweep")
        users.disable_user(session, session.get(User, other.id), actor="admin")

    lines = store.lines()
    ended = {(line["kind"], line.get("name") or line.get("username"), line.get("reason")) for line in lines}
    assert ended == {
        ("token", "laptop", RevokeReason.OWNER),
        ("token", "rotated", RevokeReason.ROTATED),
        ("token", "leaked", RevokeReason.LEAK_REPORTED),
        ("token", "found", RevokeReason.SECRET_SCANNING),
        ("token", "unused", RevokeReason.UNUSED),
        ("account", "kim", None),  # state "disabled"
        ("token", "kim's", RevokeReason.ACCOUNT_DISABLED),
    }
    assert all(line["at"] and line["created_at"] for line in lines)
    written = "\n".join(file.read_text() for file in store.settings.revocation_journal_dir.glob("*.jsonl"))
    for secret in [*secrets.values(), new_secret]:
        assert secret not in written and secret[4:36] not in written
    journal = store.settings.revocation_journal_dir
    assert journal.stat().st_mode & 0o777 == 0o700
    assert all(file.stat().st_mode & 0o777 == 0o600 for file in journal.glob("*.jsonl"))


def test_a_unit_that_rolls_back_journals_nothing(store: Store) -> None:
    with store.unit() as session:
        owner = users.create_user(session, "lee", "lee@example.test", actor="tests")
        _secret, row = store.token(owner, "kept", session)
    with pytest.raises(RuntimeError), store.unit() as session:
        token_lifecycle.revoke_token(session, row.id, owner.id, actor="lee")
        raise RuntimeError("the request failed after the revocation")
    with store.unit() as session:  # the same process's next commit does not write it either
        users.create_user(session, "max", "max@example.test", actor="tests")
    assert store.lines() == []


def test_replayed_into_an_older_copy_exactly_what_was_ended_since_ends_again(store: Store, tmp_path: Path) -> None:
    with store.unit() as session:
        owner = users.create_user(session, "ana", "ana@example.test", actor="tests")
        quitter = users.create_user(session, "bo", "bo@example.test", actor="tests")
        made = {name: store.token(owner, name, session) for name in ("stolen laptop", "kept", "revoked before")}
        made["bo's"] = store.token(quitter, "bo's", session)
    with store.unit() as session:
        token_lifecycle.revoke_token(session, made["revoked before"][1].id, owner.id, actor="ana")
    backup = store.copy_to(tmp_path / "restored")  # the backup's moment
    with store.unit() as session:
        token_lifecycle.revoke_token(session, made["stolen laptop"][1].id, owner.id, actor="ana")
        users.disable_user(session, session.get(User, quitter.id), actor="admin")
    try:
        journal = revocation_journal.read(store.settings.revocation_journal_dir)
        with unit_of_work(session_factory(backup.engine)) as session:
            replayed = revocation_journal.replay(session, journal)
            # Each token by name, then bo's account, whose token went already.
            assert sorted((entry.name, owner) for entry, owner in replayed.tokens) == [
                ("bo's", "bo"),
                ("stolen laptop", "ana"),
            ]
            assert [(entry.label, revoked) for entry, revoked in replayed.accounts] == [("bo", 0)]
        with unit_of_work(session_factory(backup.engine)) as session:
            state = {row.name: row.revoked_reason for row in session.scalars(select(PersonalToken))}
            assert state == {
                "stolen laptop": RevokeReason.RESTORED_REVOCATION,
                "kept": None,
                "revoked before": RevokeReason.OWNER,
                "bo's": RevokeReason.RESTORED_REVOCATION,
            }
            assert not session.scalars(select(User).where(User.username == "bo")).one().is_active
            said = session.scalars(select(AuditEvent).where(AuditEvent.actor == revocation_journal.ACTOR)).all()
            assert sorted(event.details.get("journaled_reason", "") for event in said) == [
                "",
                "account_disabled",
                "owner",
            ]
            assert sorted(event.action for event in said) == ["token.revoked", "token.revoked", "user.disabled"]
            again = revocation_journal.replay(session, journal)  # idempotent
            assert again.tokens == [] and again.accounts == []
    finally:
        backup.engine.dispose()


def test_an_account_disabled_and_enabled_again_before_the_backup_stays_enabled(store: Store, tmp_path: Path) -> None:
    with store.unit() as session:
        owner = users.create_user(session, "eve", "eve@example.test", actor="tests")
        users.disable_user(session, owner, actor="admin")
    with store.unit() as session:
        users.enable_user(session, session.get(User, owner.id), actor="admin")
    backup = store.copy_to(tmp_path / "restored")
    assert [line.get("state") for line in store.lines()] == ["disabled", "enabled"]
    try:
        with unit_of_work(session_factory(backup.engine)) as session:
            replayed = revocation_journal.replay(
                session, revocation_journal.read(store.settings.revocation_journal_dir)
            )
            assert replayed.accounts == [] and session.get(User, owner.id).is_active
    finally:
        backup.engine.dispose()


def test_a_token_made_after_the_restore_under_a_reused_id_is_left_alone(store: Store, tmp_path: Path) -> None:
    """The restored store hands out ids again from where the backup stood: a line of the old
    timeline names the id of a token that is somebody else's now."""
    with store.unit() as session:
        owner = users.create_user(session, "cy", "cy@example.test", actor="tests")
    backup = store.copy_to(tmp_path / "restored")
    with store.unit() as session:
        _secret, old_timeline = store.token(owner, "made after the backup", session)
        token_lifecycle.revoke_token(session, old_timeline.id, owner.id, actor="cy")
    try:
        with unit_of_work(session_factory(backup.engine)) as session:
            _secret, new_timeline = store.token(session.get(User, owner.id), "made after the restore", session)
            assert new_timeline.id == old_timeline.id
        journal = revocation_journal.read(store.settings.revocation_journal_dir)
        with unit_of_work(session_factory(backup.engine)) as session:
            assert revocation_journal.replay(session, journal).tokens == []
            assert session.get(PersonalToken, new_timeline.id).revoked_at is None
    finally:
        backup.engine.dispose()


def test_lines_cut_short_or_not_ours_are_skipped_and_counted(tmp_path: Path) -> None:
    journal = tmp_path / "journal.jsonl"
    good = {
        "at": "2026-12-01T10:00:00+00:00",
        "kind": "token",
        "token_id": 7,
        "created_at": "2026-11-01T10:00:00+00:00",
        "hint": "tks_…abcd",
        "name": "laptop",
        "reason": "owner",
    }
    journal.write_text(
        json.dumps(good) + "\n" + '{"at": "2026-12-01T10:00:01+00:00", "kind": "tok' + "\n"
        "not json\n" + json.dumps({**good, "token_id": "7"}) + "\n" + json.dumps({**good, "at": "yesterday"}) + "\n"
    )
    read = revocation_journal.read(journal)
    assert len(read.entries) == 1 and read.unreadable == 4
    assert "1 entries in 1 file(s)" in revocation_journal.age_note(read)


def test_a_journal_that_cannot_be_written_never_stops_a_revocation(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "not a folder"
    blocked.write_text("a file where the journal's folder should be")
    revocation_journal.listen(Settings(data_dir=store.settings.data_dir, revocation_journal=blocked))
    with store.unit() as session:
        owner = users.create_user(session, "di", "di@example.test", actor="tests")
        _secret, row = store.token(owner, "laptop", session)
    with caplog.at_level(logging.ERROR), store.unit() as session:
        token_lifecycle.revoke_token(session, row.id, owner.id, actor="di")
    with store.unit() as session:
        assert session.get(PersonalToken, row.id).revoked_at is not None
    assert "Could not write to the revocation journal" in caplog.text


def test_no_journal_where_none_is_given(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="No revocation journal at"):
        revocation_journal.read(tmp_path / "missing")
