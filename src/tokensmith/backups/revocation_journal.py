"""The revocation journal: every revocation also written to a file apart from the store, so that
a restore can revoke again what was revoked after its backup was taken.

A restored backup brings back the store as it was at the backup's moment: every token revoked
since then is live in it again (the stolen laptop's token works again), and every account
disabled since then is enabled. The store cannot know better; the journal can. It listens to
the audit trail (a token revoked, reported leaked, found by secret scanning or rotated away; an
account disabled, or enabled again) and, when the unit of work that did it commits, appends one
JSON line per act to
``TOKENSMITH_REVOCATION_JOURNAL/HOST.jsonl`` (default ``DATA_DIR/revocations``), synced to disk
before the commit: a revocation that committed is in the journal. (A unit that fails after
that leaves a line for a revocation that did not happen; replayed, it revokes a live token.
The journal errs on the side of revoking.) A journal that cannot be written is logged, never
a reason to refuse a revocation.

A line names the token by its id, its creation time and its hint, never by anything secret;
`replay` revokes again each live token of the store that matches all three (an id alone could
be a token made after the restore), with reason ``restored_revocation``, and disables again
each account whose last journaled act was its disabling and that matches its id and creation
time. Replaying is idempotent: what is revoked already is left alone. See docs/architecture.md, "Backups and restore".
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from tokensmith.accounts import users
from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.config import Settings
from tokensmith.errors import InvalidInput
from tokensmith.store import data_dir
from tokensmith.store.models import PersonalToken, User
from tokensmith.tokens import lifecycle as token_lifecycle

log = logging.getLogger("tokensmith.revocation_journal")

ACTOR = "revocation journal"
_PENDING = "revocation_journal"
# The events that end a credential, and the detail naming the token each one ended.
_TOKEN_ENDED: dict[str, str] = {
    AuditAction.TOKEN_REVOKED: "token_id",
    AuditAction.TOKEN_LEAK_REPORTED: "token_id",
    AuditAction.TOKEN_FOUND_BY_SCANNING: "token_id",
    AuditAction.TOKEN_ROTATED: "replaced_token_id",
}
# An account disabled and enabled again before the backup must not be disabled by a replay: both
# are journaled, and the last one counts.
_ACCOUNT_STATES: dict[str, str] = {AuditAction.USER_DISABLED: "disabled", AuditAction.USER_ENABLED: "enabled"}
_directory: Path | None = None


def listen(settings: Settings) -> None:
    """From now on, this process's revocations are journaled too (the server's start and the
    shell's commands call it)."""
    global _directory
    _directory = settings.revocation_journal_dir
    trail.subscribe(for_event)
    if not event.contains(Session, "before_commit", _write_pending):
        event.listen(Session, "before_commit", _write_pending)
        event.listen(Session, "after_rollback", _drop_pending)


def stop() -> None:
    global _directory
    _directory = None
    trail.unsubscribe(for_event)


def for_event(session: Session, recorded: trail.Event) -> None:
    """Keep the line an event calls for until its unit of work commits."""
    details = recorded.details or {}
    line: dict[str, Any] | None = None
    token_id = details.get(_TOKEN_ENDED.get(recorded.action, ""))
    if isinstance(token_id, int):
        row = session.get(PersonalToken, token_id)
        if row is not None:
            line = {
                "kind": "token",
                "token_id": row.id,
                "created_at": row.created_at.isoformat(),
                "hint": row.hint,
                "name": row.name,
                "user_id": row.user_id,
                "reason": str(row.revoked_reason or details.get("reason") or ""),
            }
    elif recorded.action in _ACCOUNT_STATES and recorded.user_id is not None:
        user = session.get(User, recorded.user_id)
        if user is not None:
            line = {
                "kind": "account",
                "state": _ACCOUNT_STATES[recorded.action],
                "user_id": user.id,
                "created_at": user.created_at.isoformat(),
                "username": user.username,
            }
    if line is not None:
        line = {"at": recorded.at.isoformat(), **line, "actor": recorded.actor}
        session.info.setdefault(_PENDING, []).append(line)


def _write_pending(session: Session) -> None:
    lines = session.info.pop(_PENDING, None)
    if not lines or _directory is None:
        return
    append(_directory, lines)


def _drop_pending(session: Session) -> None:
    """A unit rolled back: what it revoked was not revoked."""
    session.info.pop(_PENDING, None)


def append(directory: Path, lines: Iterable[dict[str, Any]]) -> None:
    """Append ``lines`` to this host's journal file in one write, synced; an error is logged."""
    data = "".join(json.dumps(line, ensure_ascii=False, sort_keys=True) + "\n" for line in lines).encode()
    path = directory / f"{_host_name()}.jsonl"
    try:
        data_dir.ensure(directory)
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, data_dir.FILE_MODE)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(descriptor, view) :]
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    except OSError as error:
        log.error("Could not write to the revocation journal %s: %s", path, error.strerror or type(error).__name__)


def _host_name() -> str:
    """This host's file: the processes of one host append to one file (each line in one write);
    hosts sharing the folder (a network filesystem) each write their own."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname())[:64] or "host"


@dataclass(frozen=True)
class Entry:
    """One journaled act: a token ended (``kind`` "token") or an account disabled or enabled again
    (``kind`` "account", ``state`` "disabled" or "enabled")."""

    at: datetime
    kind: str
    id: int
    created_at: datetime
    label: str  # the token's hint, or the account's username
    name: str = ""
    reason: str = ""
    state: str = ""


@dataclass
class Journal:
    entries: list[Entry] = field(default_factory=list)
    unreadable: int = 0  # lines cut short by a crash, or not ours
    files: int = 0


def read(path: Path) -> Journal:
    """Every entry of a journal folder (each host's file) or of one journal file."""
    if path.is_dir():
        files = sorted(path.glob("*.jsonl"))
    elif path.is_file():
        files = [path]
    else:
        raise InvalidInput(
            f"No revocation journal at {path}: give the folder TOKENSMITH_REVOCATION_JOURNAL named for the old "
            "deployment (by default its DATA_DIR/revocations), or a .jsonl file of it."
        )
    journal = Journal(files=len(files))
    for file in files:
        with file.open("rb") as handle:
            for raw in handle:
                entry = _parsed(raw)
                if entry is None:
                    journal.unreadable += 1
                else:
                    journal.entries.append(entry)
    journal.entries.sort(key=lambda entry: entry.at)
    return journal


def _parsed(raw: bytes) -> Entry | None:
    try:
        line = json.loads(raw)
        kind = line["kind"]
        label = line["hint"] if kind == "token" else line["username"]
        ident = line["token_id"] if kind == "token" else line["user_id"]
        entry = Entry(
            at=datetime.fromisoformat(line["at"]),
            kind=kind,
            id=ident,
            created_at=datetime.fromisoformat(line["created_at"]),
            label=label,
            name=str(line.get("name", "")),
            reason=str(line.get("reason", "")),
            state=str(line.get("state", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    # The JSON's own types, checked here since the dataclass does not check what it is given.
    valid = (
        (kind == "token" or (kind == "account" and entry.state in _ACCOUNT_STATES.values()))
        and type(ident) is int
        and isinstance(label, str)
        and entry.at.tzinfo is not None
        and entry.created_at.tzinfo is not None
    )
    return entry if valid else None


@dataclass
class Replayed:
    """What a replay revoked and disabled again, each with the entry that said so."""

    tokens: list[tuple[Entry, str]] = field(default_factory=list)  # (entry, owner's username)
    accounts: list[tuple[Entry, int]] = field(default_factory=list)  # (entry, its tokens revoked with it)


def replay(session: Session, journal: Journal, *, actor: str = ACTOR) -> Replayed:
    """Revoke again every live token the journal says was ended, then disable again every active
    account whose last journaled act was its disabling: tokens are matched by id, creation time
    and hint, accounts by id and creation time."""
    replayed = Replayed()
    last_acts: dict[tuple[int, datetime], Entry] = {}
    for entry in journal.entries:
        if entry.kind == "account":
            last_acts[(entry.id, entry.created_at)] = entry  # the entries are in order of time
            continue
        row = session.get(PersonalToken, entry.id)
        if row is None or row.revoked_at is not None or (row.created_at, row.hint) != (entry.created_at, entry.label):
            continue
        if token_lifecycle.revoke_again(
            session, row, actor=actor, journaled_at=entry.at.isoformat(), journaled_reason=entry.reason
        ):
            replayed.tokens.append((entry, row.owner.username))
    for (user_id, created_at), entry in last_acts.items():
        user = session.get(User, user_id)
        if entry.state == "disabled" and user is not None and user.is_active and user.created_at == created_at:
            replayed.accounts.append((entry, users.disable_user(session, user, actor=actor)))
    return replayed


def newest(journal: Journal) -> datetime | None:
    return journal.entries[-1].at if journal.entries else None


def age_note(journal: Journal) -> str:
    """How far the journal goes: ``N entries in F file(s), the newest from …``."""
    last = newest(journal)
    newest_words = f", the newest from {last.isoformat(timespec='seconds')}" if last else ""
    skipped = f"; {journal.unreadable} unreadable line(s) skipped" if journal.unreadable else ""
    return f"{len(journal.entries)} entries in {journal.files} file(s){newest_words}{skipped}"
