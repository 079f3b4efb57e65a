"""What the REST API reads and writes. ``TokenCreated`` is the only one with a secret in it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from tokensmith.clock import utcnow
from tokensmith.identity import Identity, VerifiedToken
from tokensmith.store.models import PersonalToken, TokenAddress
from tokensmith.tokens.lifecycle import MAX_LEAK_REPORT


class ErrorBody(BaseModel):
    """Every refusal: a stable code to branch on, and words a person can act on."""

    error: str = Field(description="A stable code, like token_revoked, not_found, body_too_large")
    message: str = Field(description="What happened and what to do")
    needed_scope: str | None = Field(None, description="insufficient_scope: the scope this needs")
    token_scopes: list[str] | None = Field(None, description="insufficient_scope: the scopes the token has")
    address: str | None = Field(None, description="ip_not_allowed: the address the request came from")


_REFUSALS = {
    401: "No credentials, or refused ones: unknown, mistyped, revoked or expired token; a password "
    "where a token is required. Comes with a Basic challenge",
    403: "The credential is valid but may not do this: insufficient_scope (headers X-Tokensmith-Scopes, "
    "the token's, and X-Accepted-Scopes, the one needed), ip_not_allowed (the token is limited to "
    "other addresses), or the role on the project is too low",
    404: "No such thing, or not yours: the two read alike",
    409: "It exists already",
    413: "The body is larger than this operation accepts",
    422: "The request is malformed: the message says what is wrong",
    431: "The Authorization header is too long to be a credential",
    503: "The store is unreachable; try again (Retry-After)",
}


def refusals(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The refusals an operation can answer, for its OpenAPI description."""
    return {status: {"model": ErrorBody, "description": _REFUSALS[status]} for status in statuses}


# What every operation that takes a token can answer before it does anything else (403: the
# token's limits, token_limits.py).
AUTHENTICATED = (401, 403, 431, 503)


class TokenPublic(BaseModel):
    id: int
    name: str
    hint: str
    scopes: list[str] = Field(description="Of api:read, api:write, git:read, git:write, maven:read")
    projects: list[str] | None = Field(
        description="The projects it opens; null: every project of its owner, now and later"
    )
    allowed_ips: list[str] | None = Field(description="The CIDR blocks it may be used from; null: anywhere")
    created_at: datetime
    expires_at: datetime | None
    expired: bool
    last_used_at: datetime | None
    last_used_ip: str | None
    last_used_agent: str | None
    parent_id: int | None = Field(
        description="An application token's: the id of the personal token it was made "
        "from (/nuxeo/authentication/token), listed right before it; null for any other"
    )

    @classmethod
    def of(cls, row: PersonalToken | VerifiedToken) -> TokenPublic:
        return cls(**cls.fields_of(row))

    @staticmethod
    def fields_of(row: PersonalToken | VerifiedToken) -> dict[str, Any]:
        return {
            "id": row.id,
            "name": row.name,
            "hint": row.hint,
            "scopes": list(row.scopes),
            "projects": row.projects,
            "allowed_ips": row.allowed_ips,
            "created_at": row.created_at,
            "expires_at": row.expires_at,
            "expired": row.expires_at is not None and row.expires_at <= utcnow(),
            "last_used_at": row.last_used_at,
            "last_used_ip": row.last_used_ip,
            "last_used_agent": row.last_used_agent,
            "parent_id": row.parent_id,
        }


class AddressSeen(BaseModel):
    """An address a token was used from."""

    ip: str
    first_seen_at: datetime = Field(description="The first use from there that was recorded")
    last_seen_at: datetime = Field(description="The latest use from there (written at most once a minute)")
    agent: str | None = Field(description="The client (User-Agent) last seen from there")

    @classmethod
    def of(cls, row: TokenAddress) -> AddressSeen:
        return cls(ip=row.ip, first_seen_at=row.first_seen_at, last_seen_at=row.last_seen_at, agent=row.agent)


class TokenListed(TokenPublic):
    last_used_ips: list[AddressSeen] = Field(
        description="Where it was used: its last five distinct addresses, the most recently seen first"
    )

    @classmethod
    def listed(cls, row: PersonalToken, addresses: list[TokenAddress]) -> TokenListed:
        return cls(**cls.fields_of(row), last_used_ips=[AddressSeen.of(address) for address in addresses])


class TokenCreated(TokenPublic):
    token: str = Field(description="The secret. Shown this once: store it now.")


class UserPublic(BaseModel):
    username: str
    email: str
    is_admin: bool


class Me(BaseModel):
    user: UserPublic
    authenticated_with: str = Field(description='"token", or "password" under the warn policy')
    token: TokenPublic | None = Field(description="The token this request was made with")

    @classmethod
    def json_of(cls, identity: Identity) -> bytes:
        """The answer of GET /api/v1/me, exactly this model's JSON (a test holds it to that).

        Every client calls that route to check its token, so its answer is written by orjson
        straight from the identity's typed values: building and serialising the model cost
        a tenth of the route's time under load, orjson a fiftieth.
        """
        user = identity.user
        return orjson.dumps(
            {
                "user": {"username": user.username, "email": user.email, "is_admin": user.is_admin},
                "authenticated_with": identity.method,
                "token": TokenPublic.fields_of(identity.token) if identity.token else None,
            },
            option=orjson.OPT_UTC_Z,
        )


class LeakReport(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"tokens": ["tks_…the token you found"]}})

    tokens: list[Annotated[str, Field(max_length=200)]] = Field(
        min_length=1, max_length=MAX_LEAK_REPORT, description=f"The tokens found, at most {MAX_LEAK_REPORT} at a time"
    )


class LeakReportReceived(BaseModel):
    message: str


class InstanceRegistration(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"project": "acme-contracts", "description": "staging"}})

    project: str = Field(min_length=1, max_length=64, description="The project id, like acme-contracts")
    description: str = Field(default="", max_length=200)


class InstanceRegistered(BaseModel):
    instance_id: str = Field(description="The package repository's username for this instance")
    instance_key: str = Field(description="The package repository's password. Shown this once: store it now.")
    project: str
    description: str


class ProjectPublic(BaseModel):
    id: str
    role: str
    group_id: str
    git_url: str
    maven_coordinates: str = Field(description="groupId:artifactId of the project's releases")
    maven_url: str = Field(description="The Studio Maven repository")


class AuditEventPublic(BaseModel):
    """One event of the caller's security log: the action's code to branch on, and its words."""

    id: int
    at: datetime
    action: str = Field(description="A stable code, like token.created, token.revoked, session.started")
    description: str = Field(description="What happened, in words")
    actor: str = Field(description="Who did it: a username, or what acted (leak report, identity provider)")
    ip: str | None = Field(description="The address it came from, when it tells the owner something")
    token_id: int | None = Field(description="The token it concerns, if any")
    details: dict[str, Any] = Field(description="What the action recorded: names, hints, limits; never a secret")


class AuditPage(BaseModel):
    events: list[AuditEventPublic] = Field(description="Newest first")
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page; null on the last page")
