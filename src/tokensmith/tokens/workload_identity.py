"""Workload identity: a CI job's OpenID Connect ID token exchanged for a short-lived token.

``exchange`` does it in one unit of work: the ID token read (id_tokens.py), the trusted
publishers of its issuer found (none: refused, and the issuer is never asked), its signature
checked with the issuer's keys as this process holds them (oidc_issuers.py), then its audience,
times and ``jti``; the publishers it matches, exactly (the most specific wins); its ``jti``
recorded once for every instance (``id_token_uses``: a second exchange of it is ``replayed``);
and a token minted through token_lifecycle (the one way tokens are made) for the project's CI
account: that project alone, the publisher's scopes, ``TOKENSMITH_OIDC_TOKEN_MINUTES``. The
security log keeps the ID token's ``iss``, ``sub``, ``jti`` and the publisher's claims, never
the ID token.

When the keys are not in this process yet (or the token names one they lack), ``exchange``
raises KeysNeeded before writing anything: its caller fetches them outside the unit of work
(``IssuerDirectory.refresh``, in a thread, holding no connection) and runs it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cached_property
from types import ModuleType
from typing import Any

from sqlalchemy import CursorResult, Engine, Insert, delete, insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session

from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.clock import utcnow
from tokensmith.errors import IdTokenRejected, InvalidInput, NotPermitted
from tokensmith.housekeeping import Periodic
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.projects.publishers import Candidate
from tokensmith.store.bulk_insert import BulkInsert
from tokensmith.store.database import session_factory, unit_of_work
from tokensmith.store.models import IdTokenUse, PublisherToken
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens import id_tokens
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import limits as token_limits
from tokensmith.tokens.id_tokens import PresentedIdToken, rejected
from tokensmith.tokens.oidc_issuers import IssuerDirectory

MAX_MINUTES = 60
# Statements of all the rows of an exchange or a batch, compiled once per number of rows
# (store/bulk_insert.py), on the session's connection: no ORM flush on the exchange's path (the
# tokens are made by token_lifecycle.mint_uniquely_named and their events by trail.record_now:
# the one way each is made, each by one INSERT too).
_SPENT = IdTokenUse.__table__
_LINK = BulkInsert(
    PublisherToken.__table__,
    ("token_id", "publisher_id"),
    lambda _dialect, rows: insert(PublisherToken.__table__).values(rows),
)
# The claims that say which job it was, in the token's name and the security log.
IDENTIFYING_CLAIMS = ("repository", "project_path", "pipeline_slug", "sub")
RUN_CLAIMS = ("run_id", "pipeline_id", "build_number", "job_id")
LOGGED_CLAIMS = ("sub", "repository", "project_path", "ref", "environment", "run_id", "pipeline_id", "job_id")


class KeysNeeded(Exception):
    """The issuer's keys must be fetched (``key_id``: for a key they lack) before the exchange
    can go on; nothing was written."""

    def __init__(self, issuer: str, key_id: str | None) -> None:
        super().__init__(issuer)
        self.issuer = issuer
        self.key_id = key_id


@dataclass(frozen=True)
class Exchanged:
    """What the exchange answers: the token (shown once), whose it is, what it opens, until when."""

    secret: str = field(repr=False)
    username: str
    project: str
    scopes: tuple[str, ...]
    expires_at: datetime
    token_id: int
    publisher: str


def exchange(
    session: Session,
    keys: ServerKeys,
    id_token: str,
    *,
    directory: IssuerDirectory,
    audience: str,
    prefix: str,
    minutes: int = 15,
    project: str | None = None,
    fetched: bool = False,
    ip: str | None = None,
    now: datetime | None = None,
) -> Exchanged:
    """The ID token exchanged, or IdTokenRejected (401, with its code), IssuerUnavailable (503),
    KeysNeeded (fetch, then call again with ``fetched=True``). ``project``: the one wanted, when
    the token matches publishers of several. ``now``: the moment it happens (tests set it)."""
    now = now or utcnow()
    presented = id_tokens.read(id_token)
    candidates = candidates_of(session, presented, project)
    id_tokens.verify(presented, _signing_key(directory, presented, fetched))
    expires = id_tokens.check(presented, audience=audience, now=now)
    checked = Checked(presented, expires, chosen(candidates, presented), ip, now)
    if not spend(session, [checked]):
        raise replayed(presented)
    return mint(session, keys, [checked], prefix=prefix, minutes=minutes)[0]


def candidates_of(
    session: Session,
    presented: PresentedIdToken,
    project: str | None,
    read: dict[str, list[Candidate]] | None = None,
) -> list[Candidate]:
    """The trusted publishers the token's issuer has (of ``project``, when named): none is
    ``no_matching_publisher``, before the issuer is ever asked anything. ``read``: the issuers'
    publishers read already in this unit (a batch of exchanges reads each once)."""
    if read is None or presented.issuer not in read:
        found = trusted_publishers.candidates_for_issuer(session, presented.issuer)
        if read is not None:
            read[presented.issuer] = found
    else:
        found = read[presented.issuer]
    candidates = found if project is None else [publisher for publisher in found if publisher.project_id == project]
    if not candidates:
        raise rejected(
            "no_matching_publisher",
            f"no project{f' {project!r}' if project else ''} on this server trusts ID tokens of "
            f"{presented.text('iss', 255)}: a write member of the project adds it as a trusted publisher "
            "(My Applications)",
        )
    return candidates


def _signing_key(directory: IssuerDirectory, presented: PresentedIdToken, fetched: bool) -> id_tokens.PublicKey:
    held = directory.cached(presented.issuer)
    if held is None:
        raise KeysNeeded(presented.issuer, None)
    key = held.find(presented.key_id, presented.algorithm)
    if key is not None:
        return key
    if not fetched and presented.key_id is not None and directory.may_refetch(presented.issuer):
        raise KeysNeeded(presented.issuer, presented.key_id)
    named = f"key {presented.key_id[:60]!r}" if presented.key_id else "no key (kid), and its issuer has several"
    raise rejected("invalid_signature", f"it names {named}, which its issuer does not publish")


def chosen(candidates: list[Candidate], presented: PresentedIdToken) -> Candidate:
    """The publisher the token matches, exactly (the most specific); its project's CI account
    must be enabled."""
    matches = trusted_publishers.matching(candidates, presented.claims)
    if not matches:
        said = ", ".join(f"{name} = {value}" for name in LOGGED_CLAIMS if (value := presented.text(name)) is not None)
        raise rejected(
            "no_matching_publisher",
            f"no trusted publisher matches its claims ({said or 'none of the usual ones'}); a write member of "
            "the project adds one with these claims on My Applications",
        )
    projects = sorted({publisher.project_id for publisher in matches})
    if len(projects) > 1:
        raise InvalidInput(
            f"This ID token matches trusted publishers of several projects ({', '.join(projects[:5])}): name the "
            'one you want ("project" in the request; TOKENSMITH_PROJECT for the client).'
        )
    publisher = matches[0]
    if not publisher.account_active:
        raise NotPermitted(
            f"The CI account of project {publisher.project_id} is disabled: its trusted publishers get no "
            "token until an administrator enables it again (tokensmith users enable)."
        )
    return publisher


@dataclass(frozen=True)
class Checked:
    """An ID token whose signature, audience and times held, and the publisher it matches: what
    is written for it (``spend`` then ``mint``) once its ``jti`` is known to be new."""

    presented: PresentedIdToken
    expires: datetime
    publisher: Candidate
    ip: str | None
    now: datetime

    @cached_property
    def digest(self) -> bytes:
        """The ledger's key: SHA-256 of the issuer and the jti."""
        return hashlib.sha256(f"{self.presented.issuer}\n{self.presented.jti}".encode()).digest()


def spend(session: Session, checked: list[Checked]) -> set[bytes]:
    """Record ID tokens' ``jti`` for every instance (each ID token once in the list), by one
    INSERT of all of them: the ledger keys recorded now; one not among them was there already.
    Inserted unless there: no savepoint, no error to recover from. Of two instances inserting one
    digest at once, PostgreSQL lets the second wait for the first's commit, then finds it."""
    rows = [{"digest": one.digest, "expires_at": one.expires + id_tokens.LEEWAY} for one in checked]
    return {row[0] for row in _SPEND.execute(session.connection(), rows)}


def replayed(presented: PresentedIdToken) -> IdTokenRejected:
    return rejected(
        "replayed",
        f"it was exchanged already (jti {presented.text('jti', 60)}): an ID token is exchanged once; ask "
        "the CI for a new one",
    )


def _insert_unless_there(dialect: Dialect, rows: list[dict[str, Any]]) -> Insert:
    """Each store's INSERT … ON CONFLICT DO NOTHING of spent ID tokens, by its own dialect. The
    rows inserted come back, none of those that were there: a driver's rowcount is not to be
    trusted for an INSERT (psycopg's is -1 here)."""
    statement: Insert = _DIALECTS[dialect.name].insert(_SPENT).values(rows).on_conflict_do_nothing()
    return statement.returning(_SPENT.c.digest)


_DIALECTS: dict[str, ModuleType] = {"sqlite": sqlite, "postgresql": postgresql}
_SPEND = BulkInsert(_SPENT, ("digest", "expires_at"), _insert_unless_there)


def mint(session: Session, keys: ServerKeys, spent: list[Checked], *, prefix: str, minutes: int) -> list[Exchanged]:
    """The tokens of ID tokens just spent, each through token_lifecycle (the one way tokens are
    made), its link to its publisher and its ``token.exchanged`` event through the trail: three
    INSERTs of all their rows, whether one exchange or a batch's."""
    wanted = [
        token_lifecycle.UniquelyNamed(
            checked.publisher.account_id,
            _token_name(checked.presented, checked.digest),
            token_limits.Limits(tuple(checked.publisher.scopes), (checked.publisher.project_id,), None),
            checked.now + timedelta(minutes=min(minutes, MAX_MINUTES)),
            checked.now,
        )
        for checked in spent
    ]
    # Names unique already: the jti's own digest is in each.
    made = token_lifecycle.mint_uniquely_named(session, keys, wanted, prefix=prefix)
    _LINK.execute(
        session.connection(),
        [{"token_id": row.id, "publisher_id": checked.publisher.id} for checked, row in zip(spent, made, strict=True)],
    )
    trail.record_now(session, [_event(checked, row) for checked, row in zip(spent, made, strict=True)])
    return [
        Exchanged(
            row.secret,
            checked.publisher.username,
            checked.publisher.project_id,
            tuple(row.scopes),
            row.expires_at or checked.now,  # set for every CI token
            row.id,
            checked.publisher.name,
        )
        for checked, row in zip(spent, made, strict=True)
    ]


def _event(checked: Checked, row: token_lifecycle.Minted) -> dict[str, Any]:
    presented, publisher = checked.presented, checked.publisher
    assert row.expires_at is not None  # a CI token's expiry is always set
    return trail.event_values(
        AuditAction.TOKEN_EXCHANGED,
        actor=_actor(presented),
        user_id=publisher.account_id,
        ip=checked.ip,
        at=checked.now,
        token_id=row.id,
        name=row.name,
        hint=row.hint,
        expires_at=row.expires_at.isoformat(),
        project=publisher.project_id,
        publisher=publisher.name,
        publisher_id=publisher.id,
        issuer=presented.issuer,
        subject=presented.text("sub", 255),
        jti=presented.text("jti", 255),
        matched=dict(publisher.claims),
        claims={name: value for name in LOGGED_CLAIMS if (value := presented.text(name, 255)) is not None},
        **token_lifecycle.limits_of(row),
    )


def _token_name(presented: PresentedIdToken, digest: bytes) -> str:
    """``acme/app run 4242 (3f9a1c2e)``: which job, and the ID token's own (its jti's digest)."""
    who = next((value for name in IDENTIFYING_CLAIMS if (value := presented.text(name, 60)) is not None), "CI job")
    run = next((value for name in RUN_CLAIMS if (value := presented.text(name, 20)) is not None), None)
    return f"{who}{f' run {run}' if run else ''} ({digest.hex()[:12]})"


def _actor(presented: PresentedIdToken) -> str:
    return f"CI {presented.text('sub', 72) or presented.text('iss', 72)}"[:80]


# --- the ledger of ID tokens exchanged ------------------------------------------------------------


def prune_spent(session: Session, now: datetime | None = None) -> int:
    """Forget the ID tokens that have expired: they are refused as expired now anyway."""
    result = session.execute(delete(IdTokenUse).where(IdTokenUse.expires_at < (now or utcnow())))
    assert isinstance(result, CursorResult)  # what a DELETE gives; SQLAlchemy's types say so for a Connection only
    return result.rowcount


class SpentIdTokensPruner(Periodic):
    """Every instance prunes the ledger now and then, off the requests' path (a DELETE of what
    expired is cheap, and harmless when another instance did it first)."""

    def __init__(self, engine: Engine, *, interval: float = 300.0) -> None:
        super().__init__("tokensmith-id-token-pruner", interval)
        self.sessions = session_factory(engine)

    def run_once(self) -> None:
        with unit_of_work(self.sessions) as session:
            prune_spent(session)
