"""The sweep: what one instance at a time does on a timer, and ``tokensmith tokens sweep`` now.

A round, in one transaction: revoke the tokens nobody has used for
TOKENSMITH_REVOKE_UNUSED_AFTER_DAYS (reason ``unused``, through the one revocation path, so that
each owner is told), warn the owners of those that will be in a week (``token.unused_warning``
events: the security log, My Tokens, a mail), queue the expiry reminders due (30, 7, 1 days
before; expired: notices.queue_reminders) and prune the mail outbox. "Unused" counts from the
token's last use, or from its creation if it never was used; a token already past the limit when
a round first sees it is revoked at once, without a warning first.

One round at a time across every process and instance: on PostgreSQL the round's transaction
takes an advisory lock (the job skips its round when another holds it; the shell's command waits
for it), on SQLite the file's write lock. A revocation is a conditional UPDATE and each warning is
noted (token_reminders, kind ``unused``, with when), so that whatever overlaps, each token is
retired and its owner told once. The lock keeps the name the expiry reminders' job had, so that
during a rolling upgrade an instance of either kind and one of the other never sweep at once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Engine, and_, exists, func, select, text
from sqlalchemy.orm import Session, sessionmaker

from tokensmith.audit import mail, notices, trail
from tokensmith.audit.trail import AuditAction
from tokensmith.clock import utcnow
from tokensmith.config import Settings
from tokensmith.housekeeping import Periodic
from tokensmith.store.database import lock_key, transaction_lock, unit_of_work
from tokensmith.store.models import PersonalToken, TokenReminder
from tokensmith.tokens import lifecycle as token_lifecycle

log = logging.getLogger("tokensmith.sweep")

SWEEP_LOCK = "expiry reminders"
WARN_BEFORE = timedelta(days=7)
BATCH = 500  # tokens a round revokes, and warns about, at most; the next round takes the rest
ACTOR = "unused-token policy"  # who revoked, in the owner's log
UNUSED = "unused"  # the token_reminders kind of a warning


@dataclass
class SweepDone:
    revoked: int = 0
    warned: int = 0
    reminded: int = 0
    rounds: int = 0
    full: bool = field(default=False, repr=False)  # the last round had more to do than a batch

    def add(self, other: SweepDone) -> None:
        self.revoked += other.revoked
        self.warned += other.warned
        self.reminded += other.reminded
        self.rounds += 1
        self.full = other.full

    def summary(self, after_days: int | None) -> str:
        unused = (
            f"revoked {self.revoked} token(s) unused for {after_days} days, warned about {self.warned} more"
            if after_days
            else "no unused tokens revoked (TOKENSMITH_REVOKE_UNUSED_AFTER_DAYS is not set)"
        )
        reminders = (
            f"queued {self.reminded} expiry reminder(s)"
            if mail.current()
            else "no mail (TOKENSMITH_SMTP_URL is not set)"
        )
        return f"Swept: {unused}; {reminders}."


def _last_activity() -> ColumnElement[datetime]:
    return func.coalesce(PersonalToken.last_used_at, PersonalToken.created_at)


def _live(now: datetime) -> ColumnElement[bool]:
    return and_(
        PersonalToken.revoked_at.is_(None),
        PersonalToken.expires_at.is_(None) | (PersonalToken.expires_at > now),
    )


def unused_since(row: PersonalToken) -> datetime:
    return row.last_used_at or row.created_at


def revoke_unused(session: Session, after_days: int, now: datetime) -> tuple[int, bool]:
    """Revoke up to a batch of the live tokens unused for ``after_days``: how many, and whether
    there may be more."""
    rows = session.scalars(
        select(PersonalToken)
        .where(_live(now), _last_activity() <= now - timedelta(days=after_days))
        .order_by(PersonalToken.id)
        .limit(BATCH)
    ).all()
    why = [(row, {"unused_since": f"{unused_since(row):%Y-%m-%d}", "after_days": after_days}) for row in rows]
    return token_lifecycle.revoke_unused_tokens(session, why, actor=ACTOR), len(rows) == BATCH


def warn_unused(session: Session, after_days: int, now: datetime) -> tuple[int, bool]:
    """Tell the owners of up to a batch of tokens that will be revoked unused within a week, once
    for each spell of disuse (a token used since its warning is warned again when the next
    comes): how many, and whether there may be more."""
    limit = now - timedelta(days=after_days)
    warned_since = exists().where(
        and_(
            TokenReminder.token_id == PersonalToken.id,
            TokenReminder.kind == UNUSED,
            TokenReminder.at >= _last_activity(),
        )
    )
    rows = session.scalars(
        select(PersonalToken)
        .where(_live(now), _last_activity() > limit, _last_activity() <= limit + WARN_BEFORE, ~warned_since)
        .order_by(PersonalToken.id)
        .limit(BATCH)
    ).all()
    for row in rows:
        session.merge(TokenReminder(token_id=row.id, kind=UNUSED, at=now))
        trail.record(
            session,
            AuditAction.TOKEN_UNUSED_WARNING,
            actor=ACTOR,
            user_id=row.user_id,
            token_id=row.id,
            name=row.name,
            hint=row.hint,
            unused_since=f"{unused_since(row):%Y-%m-%d}",
            revoke_on=f"{unused_since(row) + timedelta(days=after_days):%Y-%m-%d}",
            after_days=after_days,
        )
    return len(rows), len(rows) == BATCH


def sweep_round(session: Session, settings: Settings, now: datetime | None = None) -> SweepDone:
    """One round, in the caller's transaction (which holds the sweep's lock)."""
    now = now or utcnow()
    done = SweepDone()
    after_days = settings.revoke_unused_after_days
    if after_days is not None:
        done.revoked, more_revoked = revoke_unused(session, after_days, now)
        done.warned, more_warned = warn_unused(session, after_days, now)
        done.full = more_revoked or more_warned
    done.reminded = notices.queue_reminders(session, now)
    done.full = done.full or done.reminded >= notices.REMINDERS_PER_ROUND
    mail.prune(session, now)
    return done


def _take_turn(session: Session, *, wait: bool) -> bool:
    """Whether this process sweeps now: on PostgreSQL, whoever holds the advisory lock (with
    ``wait``, once the holder is done); on SQLite, the file's one write lock, taken in turn."""
    if session.get_bind().dialect.name == "postgresql" and not wait:
        return bool(
            session.execute(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": lock_key(SWEEP_LOCK)}).scalar()
        )
    transaction_lock(session, SWEEP_LOCK)
    return True


MAX_ROUNDS = 1000  # a backlog of half a million tokens; the next sweep takes what is left


def sweep(sessions: sessionmaker[Session], settings: Settings, *, wait: bool = False) -> SweepDone | None:
    """Rounds, each its own transaction, until one has less than a batch to do. None when
    another process holds the turn (and ``wait`` is off)."""
    done = SweepDone()
    for _ in range(MAX_ROUNDS):
        with unit_of_work(sessions) as session:
            if not _take_turn(session, wait=wait):
                return None if done.rounds == 0 else done
            done.add(sweep_round(session, settings))
        if not done.full:
            break
    return done


def sweep_in(session: Session, settings: Settings) -> SweepDone:
    """``tokensmith tokens sweep``: every round in the caller's transaction, once any round
    another process has under way is done."""
    _take_turn(session, wait=True)
    done = SweepDone()
    for _ in range(MAX_ROUNDS):
        done.add(sweep_round(session, settings))
        if not done.full:
            break
    return done


class Sweep(Periodic):
    """Every ``settings.sweep_seconds``, the sweep, if no other process is at it."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        super().__init__("tokensmith-sweep", settings.sweep_seconds)
        self.sessions = sessionmaker(bind=engine, expire_on_commit=False)
        self.settings = settings

    def run_once(self) -> None:
        done = sweep(self.sessions, self.settings)
        if done is not None and (done.revoked or done.warned):
            log.info("Sweep: %d unused token(s) revoked, %d owner(s) warned", done.revoked, done.warned)
