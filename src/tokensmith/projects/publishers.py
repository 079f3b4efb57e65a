"""Trusted publishers: the CI jobs a project trusts by their platform's OpenID Connect ID token.

A project's ``write`` members (and administrators, from the shell) name an issuer (GitHub
Actions', GitLab's, any OpenID Connect issuer), the claims an ID token of it must carry, each
matched exactly (one at least pins the repository or project: ``repository``, ``project_path``,
``sub``…), and the scopes the token it is exchanged for may hold. The exchange itself, and what
becomes of the tokens a publisher gave when it is removed, is tokens/workload_identity.py's.

**Whose token.** Every token a publisher gives belongs to the project's **CI account**
(``ci+PROJECT``), made with the project's first publisher: an account of origin ``ci``, a
``write`` member of that project alone, with no password, no email and no way to sign in.
Not the member who added the publisher: the job's token would then open that person's own
tokens and security log through the API, and stop when they leave. The account's tokens are
narrowed to the project and the publisher's scopes; the project's write members see and revoke
them on My Applications.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

from sqlalchemy import bindparam, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tokensmith import scopes as scope_words
from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.clock import utcnow
from tokensmith.errors import Conflict, InvalidInput, NotFound, NotPermitted
from tokensmith.projects import catalog
from tokensmith.store.models import ProjectMember, TrustedPublisher, User

CI_ORIGIN = "ci"
DEFAULT_SCOPES = ("git:read", "maven:read")
MAX_PER_PROJECT = 50
MAX_CLAIMS = 20
MAX_CLAIM_VALUE = 255
MAX_NAME = 100
MAX_ISSUER = 255
CLAIM_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,63}$")
# Claims that name one repository or project, at one platform or another: a publisher pins one at
# least, or any repository of the platform could get the project's token.
PINNING_CLAIMS = (
    "repository",
    "repository_id",
    "project_path",
    "project_id",
    "sub",
    "job_workflow_ref",
    "workflow_ref",
    "pipeline_slug",
    "pipeline_id",
)
# Checked by the exchange itself on every ID token, never matched as a publisher's claim.
CHECKED_CLAIMS = frozenset({"iss", "aud", "exp", "nbf", "iat", "jti"})
GITHUB_ACTIONS = "https://token.actions.githubusercontent.com"
GITLAB_COM = "https://gitlab.com"
# What the pages call the issuers everybody knows; any other is named by its host.
KNOWN_ISSUERS = {GITHUB_ACTIONS: "GitHub Actions", GITLAB_COM: "GitLab.com", "https://agent.buildkite.com": "Buildkite"}
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


# --- the project's CI account -------------------------------------------------------------------


def ci_username(project_id: str) -> str:
    """``ci+PROJECT``: a name no person's account can have (usernames take no ``+``), within the
    64 characters of a username (a longer project id is shortened, with a digest of it)."""
    name = f"ci+{project_id}"
    if len(name) <= 64:
        return name
    return f"ci+{project_id[:52]}-{hashlib.sha256(project_id.encode()).hexdigest()[:8]}"


def is_ci_account(user: User) -> bool:
    return user.origin == CI_ORIGIN


def not_for_ci(user: User, what: str) -> None:
    """Refuse giving a CI account what a person has: a password, a sign-in, a token by hand."""
    if is_ci_account(user):
        raise NotPermitted(
            f"{user.username} is the CI account of a project: {what} is not for it. Its tokens come only "
            "from the project's trusted publishers, for the CI jobs they name."
        )


def ci_account(session: Session, project_id: str, *, actor: str) -> User:
    """The project's CI account, made (a ``write`` member of it) on first use."""
    username = ci_username(project_id)
    account = session.scalars(select(User).where(func.lower(User.username) == username.lower())).one_or_none()
    if account is not None:
        if not is_ci_account(account):  # cannot happen: no person's username has a "+"
            raise Conflict(f"An account named {username} exists and is not a CI account.")
        return account
    account = User(
        username=username,
        email="",  # never mailed (mail.plausible_address)
        is_admin=False,
        is_active=True,
        created_at=utcnow(),
        origin=CI_ORIGIN,
        display_name=f"CI of {project_id}",
    )
    session.add(account)
    session.flush()
    session.add(ProjectMember(project_id=project_id, user_id=account.id, role="write"))
    trail.record(session, AuditAction.USER_CREATED, actor=actor, user_id=account.id, admin=False, origin=CI_ORIGIN)
    return account


def require_manager(session: Session, project_id: str, user_id: int) -> None:
    """A person who may manage the project's trusted publishers: a ``write`` member, not a CI
    account (whose token could otherwise make itself a publisher of its own)."""
    catalog.require_role(session, project_id, user_id, "write")
    user = session.get(User, user_id)
    if user is not None and is_ci_account(user):
        raise NotPermitted("A CI token cannot change the project's trusted publishers: a write member does that.")


# --- what a publisher is made of ----------------------------------------------------------------------


def validate_issuer(issuer: str) -> str:
    """An issuer's URL, exactly as its ID tokens' ``iss`` says it: ``https://``, or ``http://`` on
    a loopback address; no query, fragment or credentials."""
    issuer = issuer.strip()
    parts = urlsplit(issuer)
    secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS)
    if (
        len(issuer) > MAX_ISSUER
        or not parts.hostname
        or not secure
        or parts.query
        or parts.fragment
        or parts.username is not None
        or not issuer.isprintable()
        or " " in issuer
    ):
        raise InvalidInput(
            "The issuer is the https:// URL the CI's ID tokens name in their iss claim, like "
            f"{GITHUB_ACTIONS} or {GITLAB_COM} (plain http only on a loopback address), at most "
            f"{MAX_ISSUER} characters."
        )
    return issuer


def validate_claims(claims: Mapping[str, str]) -> dict[str, str]:
    """The claims an ID token must carry, each exactly: names like ``repository``, values of
    printable text; one of them at least pins the repository or project."""
    if not claims:
        raise InvalidInput(f"Name the claims an ID token must carry, one at least of {', '.join(PINNING_CLAIMS)}.")
    if len(claims) > MAX_CLAIMS:
        raise InvalidInput(f"A trusted publisher matches at most {MAX_CLAIMS} claims; this one names {len(claims)}.")
    checked: dict[str, str] = {}
    for name, value in claims.items():
        if not CLAIM_NAME.match(name):
            raise InvalidInput(f"{name[:40]!r} is not a claim's name (like repository or project_path).")
        if name in CHECKED_CLAIMS:
            raise InvalidInput(
                f"{name} is checked on every ID token already (the issuer, the audience, the times, the jti): "
                "name the claims that say which CI job it is."
            )
        if not value.strip() or len(value) > MAX_CLAIM_VALUE or not value.isprintable():
            raise InvalidInput(
                f"The claim {name} needs a value of 1 to {MAX_CLAIM_VALUE} printable characters, matched exactly."
            )
        checked[name] = value.strip()
    if not any(name in checked for name in PINNING_CLAIMS):
        raise InvalidInput(
            "A trusted publisher must pin the repository or project its jobs run for, with one of the claims "
            f"{', '.join(PINNING_CLAIMS)}: without it, any repository at that CI could get this project's token."
        )
    return dict(sorted(checked.items()))


def parse_claim(text: str) -> tuple[str, str]:
    """``NAME=VALUE`` (the shell's --claim, a line of the page's form) as a pair."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise InvalidInput(f"{text[:60]!r} is not a claim: write it NAME=VALUE, like repository=acme/app.")
    return name.strip(), value.strip()


def parse_claims(lines: Iterable[str]) -> dict[str, str]:
    claims: dict[str, str] = {}
    for line in lines:
        if line.strip():
            name, value = parse_claim(line)
            if name in claims:
                raise InvalidInput(f"The claim {name[:40]} is named twice: a claim is matched against one value.")
            claims[name] = value
    return claims


def validate_name(name: str | None, issuer: str, claims: Mapping[str, str]) -> str:
    """The name a person finds the publisher by; by default the issuer's and what it pins."""
    if name is None or not name.strip():
        pinned = next(claims[claim] for claim in PINNING_CLAIMS if claim in claims)
        return f"{issuer_label(issuer)}: {pinned}"[:MAX_NAME]
    name = name.strip()
    if len(name) > MAX_NAME or not name.isprintable():
        raise InvalidInput(f"A trusted publisher's name is 1 to {MAX_NAME} printable characters.")
    return name


def issuer_label(issuer: str) -> str:
    return KNOWN_ISSUERS.get(issuer, urlsplit(issuer).netloc or issuer)


# --- adding, finding, removing ------------------------------------------------------------------------


def add_publisher(
    session: Session,
    project_id: str,
    *,
    issuer: str,
    claims: Mapping[str, str],
    scopes: Iterable[str] = DEFAULT_SCOPES,
    name: str | None = None,
    actor: str,
) -> TrustedPublisher:
    """A new trusted publisher of the project (who may add one is the caller's to check:
    ``require_manager``). The same issuer and claims twice, or a name taken, is a Conflict."""
    catalog.get_project(session, project_id)
    issuer = validate_issuer(issuer)
    claims = validate_claims(claims)
    granted = scope_words.validate(scopes)
    named = validate_name(name, issuer, claims)
    existing = publishers_of(session, project_id)
    taken = {other.name for other in existing}
    if name is None or not name.strip():  # a name of our making: numbered while taken
        name = next(
            f"{named} ({n})"[:MAX_NAME] if n > 1 else named
            for n in range(1, 100)
            if (f"{named} ({n})"[:MAX_NAME] if n > 1 else named) not in taken
        )
    else:
        name = named
    if len(existing) >= MAX_PER_PROJECT:
        raise Conflict(f"Project {project_id} has {MAX_PER_PROJECT} trusted publishers: remove one first.")
    for other in existing:
        if other.issuer == issuer and other.claims == claims:
            raise Conflict(f"The trusted publisher “{other.name}” matches these very ID tokens already.")
        if other.name == name:
            raise Conflict(f"Project {project_id} has a trusted publisher named “{name}”: choose another name.")
    account = ci_account(session, project_id, actor=actor)
    publisher = TrustedPublisher(
        project_id=project_id,
        account_id=account.id,
        name=name,
        issuer=issuer,
        claims=claims,
        scopes=list(granted),
        created_at=utcnow(),
        created_by=actor[:80],
    )
    try:
        with session.begin_nested():  # two people adding one name at once: the index decides
            session.add(publisher)
    except IntegrityError:
        raise Conflict(f"Project {project_id} has a trusted publisher named “{name}”: choose another name.") from None
    trail.record(session, AuditAction.PUBLISHER_ADDED, actor=actor, user_id=account.id, **described(publisher))
    return publisher


def described(publisher: TrustedPublisher) -> dict[str, Any]:
    """A publisher as the audit trail keeps it."""
    return {
        "publisher_id": publisher.id,
        "name": publisher.name,
        "project": publisher.project_id,
        "issuer": publisher.issuer,
        "claims": dict(publisher.claims),
        "scopes": list(publisher.scopes),
    }


def publishers_of(session: Session, project_id: str) -> list[TrustedPublisher]:
    query = select(TrustedPublisher).where(TrustedPublisher.project_id == project_id).order_by(TrustedPublisher.id)
    return list(session.scalars(query))


def all_publishers(session: Session, project_id: str | None = None) -> list[TrustedPublisher]:
    """Every trusted publisher (of one project), by project and age: the shell's list."""
    query = select(TrustedPublisher).order_by(TrustedPublisher.project_id, TrustedPublisher.id)
    if project_id is not None:
        query = query.where(TrustedPublisher.project_id == project_id)
    return list(session.scalars(query))


@dataclass(frozen=True)
class Candidate:
    """A publisher an ID token may match, with its project's CI account: what the exchange reads."""

    id: int
    project_id: str
    name: str
    claims: dict[str, str]
    scopes: tuple[str, ...]
    account_id: int
    username: str
    account_active: bool


_PUBLISHERS, _USERS = TrustedPublisher.__table__, User.__table__
_CANDIDATES = (
    select(
        _PUBLISHERS.c.id,
        _PUBLISHERS.c.project_id,
        _PUBLISHERS.c.name,
        _PUBLISHERS.c.claims,
        _PUBLISHERS.c.scopes,
        _PUBLISHERS.c.account_id,
        _USERS.c.username,
        _USERS.c.is_active,
    )
    .join(_USERS, _USERS.c.id == _PUBLISHERS.c.account_id)
    .where(_PUBLISHERS.c.issuer == bindparam("issuer"))
)


def candidates_for_issuer(session: Session, issuer: str) -> list[Candidate]:
    """The publishers an ID token of ``issuer`` may match, where every exchange starts: one
    statement, read as plain values (the exchange is on a hot path of its own)."""
    if len(issuer) > MAX_ISSUER:
        return []
    rows = session.connection().execute(_CANDIDATES, {"issuer": issuer}).all()  # Core: no ORM on this path
    return [Candidate(row[0], row[1], row[2], row[3], tuple(row[4]), row[5], row[6], bool(row[7])) for row in rows]


def get_publisher(session: Session, publisher_id: int, project_id: str | None = None) -> TrustedPublisher:
    """One publisher (of ``project_id``, when given); NotFound otherwise, in the same words."""
    publisher = session.get(TrustedPublisher, publisher_id)
    if publisher is None or (project_id is not None and publisher.project_id != project_id):
        raise NotFound(
            f"There is no trusted publisher {publisher_id}{f' of project {project_id}' if project_id else ''}."
        )
    return publisher


def delete_publisher(session: Session, publisher: TrustedPublisher, *, actor: str, revoked: int) -> None:
    """Remove a publisher whose tokens were revoked already (``revoked`` of them):
    workload_identity.remove_publisher does both."""
    trail.record(
        session,
        AuditAction.PUBLISHER_REMOVED,
        actor=actor,
        user_id=publisher.account_id,
        revoked=revoked,
        **described(publisher),
    )
    session.delete(publisher)
    session.flush()


class Matchable(Protocol):
    @property
    def id(self) -> int: ...
    @property
    def claims(self) -> Mapping[str, str]: ...


M = TypeVar("M", bound=Matchable)


def matching(publishers: Sequence[M], claims: Mapping[str, object]) -> list[M]:
    """The publishers whose every claim the ID token's ``claims`` carry, exactly, most specific
    first (the most claims; then the oldest). A claim that is a number or a boolean in the token
    is compared as JSON writes it (``42``, ``true``); one that is an object or a list never matches."""

    def carried(name: str, wanted: str) -> bool:
        value = claims.get(name)
        if isinstance(value, bool):
            return wanted == ("true" if value else "false")
        if isinstance(value, (int, float)):
            return wanted == str(value)
        return isinstance(value, str) and value == wanted

    found = [p for p in publishers if all(carried(name, wanted) for name, wanted in p.claims.items())]
    return sorted(found, key=lambda publisher: (-len(publisher.claims), publisher.id))
