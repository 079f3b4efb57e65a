"""SCIM 2.0 user provisioning: RFC 7643 User resources <-> accounts, RFC 7644 operations.

The identity provider (Okta, Entra ID) creates, updates, deactivates and deletes the accounts
of its people here. It sees the accounts it can be trusted with: those it provisioned, those
its people created by signing in through it, and local accounts an administrator linked to it
(``tokensmith users link``). Other local accounts, the first-start ``admin`` among them, stay
out of its sight: a directory entry that happens to share their name must not take them over.

What the provider sends of a person's names and addresses reads back as sent; the account's
own display name and email are derived from it (``resources``). Core attributes Tokensmith
does not keep (phone numbers, title, locale, ``password``, ...) and extension attributes are
accepted and ignored; the password in particular is never stored or logged. PATCH is in
``patch``, the filter and path language in ``filters``.

Deactivation (``active: false``) disables the account: its browser sessions end and every
token is revoked at once. Reactivation lets the person in again; revoked tokens stay revoked.
Deletion disables the account too and hides it from SCIM; the row stays for the audit trail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, false, func, or_, select
from sqlalchemy.orm import Session

from tokensmith.accounts import users
from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.clock import utcnow
from tokensmith.errors import Conflict
from tokensmith.scim import patch as scim_patch
from tokensmith.scim.filters import FILTER_HELP, parse_filter
from tokensmith.scim.protocol import (  # noqa: F401 (the vocabulary, as callers know it)
    ENTERPRISE_USER_SCHEMA,
    ERROR_SCHEMA,
    LIST_RESPONSE_SCHEMA,
    PATCH_OP_SCHEMA,
    SEARCH_REQUEST_SCHEMA,
    USER_SCHEMA,
    ScimError,
    boolean,
    invalid,
    lowered,
    message,
    string,
)
from tokensmith.scim.resources import (  # noqa: F401
    EVERY_ATTRIBUTE,
    Profile,
    Shown,
    location,
    profile_from,
    resource,
    resource_attributes,
    shown,
)
from tokensmith.store.models import User

ACTOR = "scim"
MAX_RESULTS = 200
DEFAULT_COUNT = 100
MANAGED_ORIGINS = ("scim", "oidc")
SEARCH_FIELDS = frozenset({"filter", "attributes", "excludedattributes", "startindex", "count", "sortby", "sortorder"})
_ID = re.compile(r"[0-9]{1,10}")


@dataclass(frozen=True)
class Page:
    total: int
    start_index: int
    users: list[User]


@dataclass(frozen=True)
class Query:
    """A list request: from GET /Users's parameters or a POST .search's SearchRequest."""

    filter: str = ""
    start_index: int = 1
    count: int = DEFAULT_COUNT
    shown: Shown = field(default_factory=Shown)


# --- reading and writing users ---------------------------------------------------------------


def visible() -> ColumnElement[bool]:
    """The accounts SCIM may see and change (see the module's docstring)."""
    return User.removed_at.is_(None) & or_(User.origin.in_(MANAGED_ORIGINS), User.oidc_subject.is_not(None))


def get_user(session: Session, user_id: str) -> User:
    user = None
    if _ID.fullmatch(user_id) and int(user_id) < 2**31:
        user = session.scalars(select(User).where(User.id == int(user_id), visible())).one_or_none()
    if user is None:
        raise ScimError(404, None, f"There is no user with id {user_id[:40]!r}.")
    return user


def _is_visible(session: Session, user: User) -> bool:
    return session.scalars(select(User.id).where(User.id == user.id, visible())).first() is not None


def create_user(session: Session, body: object, *, ip: str | None = None) -> User:
    """POST /Users: a new account of origin "scim", without a password."""
    profile = profile_from(resource_attributes(body), active=True)
    user_name = profile.user_name or ""  # profile_from refuses a body without one
    _claim_user_name(session, user_name, None, ip)
    try:
        user = users.create_user(
            session,
            user_name,
            profile.account_email(),
            display_name=profile.account_display_name(),
            origin="scim",
            actor=ACTOR,
        )
    except Conflict as error:  # only when another request took the name since the check
        raise ScimError(409, "uniqueness", error.message) from None
    user.external_id = profile.external_id
    user.scim_profile = profile.kept()
    if not profile.active:
        users.disable_user(session, user, actor=ACTOR)
    session.flush()
    return user


def replace_user(session: Session, user_id: str, body: object, *, ip: str | None = None) -> User:
    """PUT /Users/{id}: the attributes given replace the stored ones; those left out are cleared,
    except ``active``, which an omission leaves as it is."""
    user = get_user(session, user_id)
    _write(session, user, profile_from(resource_attributes(body), active=user.is_active), ip)
    return user


def patch_user(session: Session, user_id: str, body: object, *, ip: str | None = None) -> User:
    """PATCH /Users/{id}: the operations apply in order, all or none."""
    user = get_user(session, user_id)
    _write(session, user, scim_patch.patched(Profile.of(user), body), ip)
    return user


def remove_user(session: Session, user_id: str, *, ip: str | None = None) -> None:
    """DELETE /Users/{id}: disabled and out of SCIM's sight; the row stays for the audit trail."""
    user = get_user(session, user_id)
    users.disable_user(session, user, actor=ACTOR)
    user.removed_at = user.updated_at = utcnow()
    trail.record(session, AuditAction.USER_REMOVED, actor=ACTOR, user_id=user.id, ip=ip)
    session.flush()


def list_users(
    session: Session, filter_text: str | None = None, *, start_index: int = 1, count: int = DEFAULT_COUNT
) -> Page:
    """GET /Users: oldest first, ``start_index`` 1-based; ``count`` between 0 and MAX_RESULTS."""
    conditions = [visible(), *(_condition(name, value) for name, value in parse_filter(filter_text or ""))]
    start_index, count = min(max(start_index, 1), 2**31), min(max(count, 0), MAX_RESULTS)
    total = session.scalar(select(func.count()).select_from(User).where(*conditions)) or 0
    users = []
    if count:
        query = select(User).where(*conditions).order_by(User.id).offset(start_index - 1).limit(count)
        users = list(session.scalars(query))
    return Page(total=total, start_index=start_index, users=users)


def search(session: Session, query: Query, public_url: str) -> dict[str, Any]:
    """GET /Users, POST /Users/.search and POST /.search: a ListResponse (Users are the only
    resources Tokensmith serves, so a search at the root is a search of /Users)."""
    page = list_users(session, query.filter, start_index=query.start_index, count=query.count)
    return list_response(page, public_url, query.shown)


def search_request(body: object) -> Query:
    """The Query of an RFC 7644 §3.4.3 SearchRequest. Sorting is not offered (ServiceProviderConfig
    says so): sortBy and sortOrder are read and ignored, users come oldest first."""
    body, _ = message(body, SEARCH_REQUEST_SCHEMA, "a SCIM SearchRequest")
    fields = {key: value for key, value in lowered(body, "A SearchRequest").items() if key != "schemas"}
    for key in fields.keys() - SEARCH_FIELDS:
        raise invalid(
            "invalidSyntax",
            f"Unknown SearchRequest attribute {key[:100]!r}: it takes filter, "
            "attributes, excludedAttributes, startIndex and count.",
        )
    string(fields.get("sortby"), "sortBy"), string(fields.get("sortorder"), "sortOrder")
    return Query(
        filter=string(fields.get("filter"), "filter") or "",
        start_index=whole_number(fields.get("startindex"), "startIndex", 1),
        count=whole_number(fields.get("count"), "count", DEFAULT_COUNT),
        shown=shown(
            names(fields.get("attributes"), "attributes"), names(fields.get("excludedattributes"), "excludedAttributes")
        ),
    )


def whole_number(value: object, what: str, default: int) -> int:
    if value is None:
        return default
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise invalid("invalidValue", f"{what} must be a whole number.")


def names(value: object, what: str) -> list[str] | None:
    """Attribute names: a list of strings, or one string of them separated by commas."""
    if value is None or isinstance(value, str):
        value = [value or ""]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return [part.strip() for item in value for part in item.split(",") if part.strip()] or None
    raise invalid("invalidValue", f'{what} is a list of attribute names, like ["userName", "name.givenName"].')


def _write(session: Session, user: User, profile: Profile, ip: str | None) -> None:
    changed = []
    if profile.user_name and profile.user_name != user.username:
        _claim_user_name(session, profile.user_name, user, ip)
        user.username = profile.user_name
        changed.append("userName")
    before, after = Profile.of(user).model_dump(), profile.model_dump()
    changed += [name for name in ("emails", "name", "displayName", "externalId") if before.get(name) != after.get(name)]
    if changed:
        user.email, user.display_name = profile.account_email(), profile.account_display_name()
        user.external_id, user.scim_profile = profile.external_id, profile.kept()
        user.updated_at = utcnow()
        trail.record(session, AuditAction.USER_UPDATED, actor=ACTOR, user_id=user.id, ip=ip, attributes=changed)
    if profile.active != user.is_active:
        user.updated_at = utcnow()
        if profile.active:
            users.enable_user(session, user, actor=ACTOR)
        else:
            users.disable_user(session, user, actor=ACTOR)
    session.flush()


def _claim_user_name(session: Session, user_name: str, claimant: User | None, ip: str | None) -> None:
    """Make sure ``user_name`` is free for ``claimant`` (None: a new account), or refuse."""
    holder = users.find_user(session, user_name)
    if holder is None or holder is claimant:
        return
    if holder.removed_at is not None:
        _release_user_name(session, holder, ip)
    elif _is_visible(session, holder):
        raise ScimError(
            409,
            "uniqueness",
            f"A user named {holder.username!r} already exists (id {holder.id}): userName is unique, whatever the case.",
        )
    else:
        raise ScimError(
            409,
            "uniqueness",
            (
                f"Tokensmith already has a local account named {holder.username!r}, and provisioning "
                "does not take local accounts over. Provision this person under another userName, or "
                "have a Tokensmith administrator link the account to the identity provider "
                f"(tokensmith users link {holder.username} --subject SUBJECT) so that it manages it."
            ),
        )


def _release_user_name(session: Session, holder: User, ip: str | None) -> None:
    """A deleted user's name goes to whoever is provisioned with it next, as a new account: the
    deleted one keeps its row under a name no person can type."""
    suffix = f"~removed-{holder.id}"
    previous, holder.username = holder.username, holder.username[: 64 - len(suffix)] + suffix
    trail.record(
        session,
        AuditAction.USER_RENAMED,
        actor=ACTOR,
        user_id=holder.id,
        ip=ip,
        previous=previous,
        username=holder.username,
        reason="name provisioned again",
    )
    session.flush()  # before the name is taken again: the unique index must see it free


# --- the ListResponse ---------------------------------------------------------------------------


def list_response(page: Page, public_url: str, only: Shown = EVERY_ATTRIBUTE) -> dict[str, Any]:
    resources = [resource(user, public_url, only) for user in page.users]
    return listed(resources, total=page.total, start_index=page.start_index)


def listed(resources: list[dict[str, Any]], *, total: int | None = None, start_index: int = 1) -> dict[str, Any]:
    """An RFC 7644 ListResponse: ``resources`` are one page of ``total`` (default: all of them)."""
    return {
        "schemas": [LIST_RESPONSE_SCHEMA],
        "totalResults": len(resources) if total is None else total,
        "itemsPerPage": len(resources),
        "startIndex": start_index,
        "Resources": resources,
    }


# --- filters -----------------------------------------------------------------------------------


def _condition(attribute: str, value: object) -> ColumnElement[bool]:
    if attribute == "active" and isinstance(value, (bool, str)):
        return User.is_active == _filter_active(value)
    if attribute == "id" and isinstance(value, int) and not isinstance(value, bool):
        value = str(value) if 0 <= value < 2**31 else ""  # id eq 42, unquoted
    if not isinstance(value, str):
        raise invalid("invalidFilter", f"{FILTER_HELP}; compare {attribute[:60]} with a quoted string.")
    if attribute == "username":
        return func.lower(User.username) == value.lower()
    if attribute in ("emails.value", "emails"):
        return func.lower(User.email) == value.lower()
    if attribute == "externalid":
        return User.external_id == value
    if attribute == "id":
        return User.id == int(value) if _ID.fullmatch(value) and int(value) < 2**31 else false()
    raise invalid("invalidFilter", f"{FILTER_HELP}; {attribute[:60]!r} is not one of them.")


def _filter_active(value: bool | str) -> bool:
    try:
        return boolean(value, "active")
    except ScimError:
        raise invalid("invalidFilter", "Filter on active with true or false.") from None
