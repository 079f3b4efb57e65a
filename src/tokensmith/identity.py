"""Who is calling, and with what: plain values that every layer may hold.

A request's credentials (``Credentials``), the account behind them (``Account``), the token
they presented once the check found it (``VerifiedToken``) and the whole answer (``Identity``).
No ORM rows: these stay readable after the request's transaction is gone (an error page still
names the person), and the token check builds them straight from its one lookup. Nothing here
imports the domain, so the token check, the accounts and the web's extractor all can.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class BasicCredentials:
    username: str
    secret: str


@dataclass(frozen=True)
class BearerCredentials:
    secret: str


Credentials = BasicCredentials | BearerCredentials


class _UserRow(Protocol):
    id: int
    username: str
    email: str
    is_admin: bool


@dataclass(frozen=True)
class Account:
    """A user as a request sees them."""

    id: int
    username: str
    email: str
    is_admin: bool

    @classmethod
    def of(cls, user: _UserRow) -> Account:
        """From a ``models.User`` row."""
        return cls(id=user.id, username=user.username, email=user.email, is_admin=user.is_admin)


@dataclass(slots=True)
class VerifiedToken:
    """A token the credential check found, with its owner (tokens/check.py builds it from its
    one lookup; its fields after ``owner_active`` are columns of the token's row, by name, which
    come last so that the check passes them as one run of positions that mypy can follow)."""

    owner: Account
    owner_active: bool
    id: int
    name: str
    hint: str
    scopes: list[str]
    projects: list[str] | None
    allowed_ips: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None
    last_used_agent: str | None
    revoked_at: datetime | None
    revoked_reason: str | None
    parent_id: int | None  # an application token's: the personal token it was derived from


@dataclass(frozen=True)
class Identity:
    """Who made a request and how."""

    user: Account
    method: str  # "token", "password" or "session"
    token: VerifiedToken | None = None
    warning: str | None = None

    @property
    def username(self) -> str:
        return self.user.username
