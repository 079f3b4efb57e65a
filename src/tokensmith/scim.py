"""SCIM 2.0 user provisioning: RFC 7643 User resources <-> accounts, RFC 7644 operations.

The identity provider (Okta, Entra ID) creates, updates, deactivates and deletes the accounts
of its people here. It sees the accounts it can be trusted with: those it provisioned, those
its people created by signing in through it, and local accounts an administrator linked to it
(``tokensmith users link``). Other local accounts, the first-start ``admin`` among them, stay
out of its sight: a directory entry that happens to share their name must not take them over.

Tokensmith keeps one name per person (``display_name``): ``displayName`` and
``name.formatted`` both read and write it, ``name.givenName``/``familyName`` are derived from
it. It keeps one email address, the work (primary) one. Core attributes it does not keep
(phone numbers, title, locale, ``password``, ...) and extension attributes are accepted and
ignored; the password in particular is never stored or logged.

Deactivation (``active: false``) disables the account: its browser sessions end and every
token is revoked at once. Reactivation lets the person in again; revoked tokens stay revoked.
Deletion disables the account too and hides it from SCIM; the row stays for the audit trail.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import ColumnElement, false, func, or_, select
from sqlalchemy.orm import Session

from tokensmith import accounts, audit
from tokensmith.clock import utcnow
from tokensmith.errors import Conflict, InvalidInput
from tokensmith.models import User

ACTOR = "scim"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
LIST_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
EXTENSION_PREFIX = "urn:ietf:params:scim:schemas:extension:"
MAX_RESULTS = 200
DEFAULT_COUNT = 100
MAX_FILTER_LENGTH = 1000
MAX_EXTERNAL_ID_LENGTH = 255
MANAGED_ORIGINS = ("scim", "oidc")

# RFC 7643 §4.1 and §3.1, lowercased: SCIM attribute names are case-insensitive.
CORE_ATTRIBUTES = frozenset({
    "id", "externalid", "meta", "username", "name", "displayname", "nickname", "profileurl",
    "title", "usertype", "preferredlanguage", "locale", "timezone", "active", "password",
    "emails", "phonenumbers", "ims", "photos", "addresses", "groups", "entitlements", "roles",
    "x509certificates",
})
NAME_PARTS = frozenset({"formatted", "familyname", "givenname", "middlename", "honorificprefix", "honorificsuffix"})
STORED = frozenset({"username", "externalid", "name", "displayname", "emails", "active"})
READ_ONLY = frozenset({"id", "meta"})
PATCH_OPS = frozenset({"add", "replace", "remove"})

FILTER_HELP = (
    'Tokensmith filters users with "eq" on userName, externalId, id, emails.value or active, '
    'joined by "and", like userName eq "ada@example.com"'
)
_FILTER_TOKEN = re.compile(r'\s*(?:(?P<string>"(?:[^"\\]|\\.)*")|(?P<word>[^\s"()\[\]]+)|(?P<other>\S))')
_PATH = re.compile(r"(?P<attribute>[A-Za-z][\w$-]*)(?:\[(?P<filter>[^\[\]]+)\])?(?:\.(?P<sub>[A-Za-z][\w$-]*))?")
_ID = re.compile(r"[0-9]{1,10}")


class ScimError(Exception):
    """A refusal in RFC 7644 §3.12 terms: an HTTP status, a ``scimType`` (or None) and words."""

    def __init__(self, status: int, scim_type: str | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.scim_type = scim_type
        self.detail = detail

    def document(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status)}
        if self.scim_type:
            body["scimType"] = self.scim_type
        body["detail"] = self.detail
        return body


def _invalid(scim_type: str, detail: str) -> ScimError:
    return ScimError(400, scim_type, detail)


@contextmanager
def _as_invalid_value() -> Iterator[None]:
    try:
        yield
    except InvalidInput as error:
        raise _invalid("invalidValue", error.message) from None


@dataclass(frozen=True)
class Profile:
    """What SCIM may set on an account, assembled before anything is written."""

    user_name: str
    email: str
    display_name: str | None
    external_id: str | None
    active: bool

    @classmethod
    def of(cls, user: User) -> Profile:
        return cls(user.username, user.email, user.display_name, user.external_id, user.is_active)


@dataclass(frozen=True)
class Page:
    total: int
    start_index: int
    users: list[User]


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
    profile = _profile_from(_resource_attributes(body), active=True)
    _claim_user_name(session, profile.user_name, None, ip)
    try:
        user = accounts.create_user(session, profile.user_name, profile.email,
                                    display_name=profile.display_name, origin="scim", actor=ACTOR)
    except Conflict as error:  # only when another request took the name since the check
        raise ScimError(409, "uniqueness", error.message) from None
    user.external_id = profile.external_id
    if not profile.active:
        accounts.disable_user(session, user, actor=ACTOR)
    session.flush()
    return user


def replace_user(session: Session, user_id: str, body: object, *, ip: str | None = None) -> User:
    """PUT /Users/{id}: the attributes given replace the stored ones; those left out are cleared,
    except ``active``, which an omission leaves as it is."""
    user = get_user(session, user_id)
    _write(session, user, _profile_from(_resource_attributes(body), active=user.is_active), ip)
    return user


def patch_user(session: Session, user_id: str, body: object, *, ip: str | None = None) -> User:
    """PATCH /Users/{id}: the operations apply in order, all or none."""
    user = get_user(session, user_id)
    profile = Profile.of(user)
    for op, path, value in _operations(body):
        profile = _apply(profile, op, path, value)
    _write(session, user, profile, ip)
    return user


def remove_user(session: Session, user_id: str, *, ip: str | None = None) -> None:
    """DELETE /Users/{id}: disabled and out of SCIM's sight; the row stays for the audit trail."""
    user = get_user(session, user_id)
    accounts.disable_user(session, user, actor=ACTOR)
    user.removed_at = user.updated_at = utcnow()
    audit.record(session, "user.removed", actor=ACTOR, user_id=user.id, ip=ip)
    session.flush()


def list_users(session: Session, filter_text: str | None = None, *, start_index: int = 1,
               count: int = DEFAULT_COUNT) -> Page:
    """GET /Users: oldest first, ``start_index`` 1-based; ``count`` between 0 and MAX_RESULTS."""
    conditions = [visible(), *(_condition(name, value) for name, value in parse_filter(filter_text or ""))]
    start_index, count = min(max(start_index, 1), 2**31), min(max(count, 0), MAX_RESULTS)
    total = session.scalar(select(func.count()).select_from(User).where(*conditions)) or 0
    users = []
    if count:
        query = select(User).where(*conditions).order_by(User.id).offset(start_index - 1).limit(count)
        users = list(session.scalars(query))
    return Page(total=total, start_index=start_index, users=users)


def _write(session: Session, user: User, profile: Profile, ip: str | None) -> None:
    changed = []
    if profile.user_name != user.username:
        _claim_user_name(session, profile.user_name, user, ip)
        user.username = profile.user_name
        changed.append("userName")
    for attribute, field, value in (("emails", "email", profile.email),
                                    ("displayName", "display_name", profile.display_name),
                                    ("externalId", "external_id", profile.external_id)):
        if getattr(user, field) != value:
            setattr(user, field, value)
            changed.append(attribute)
    if changed:
        user.updated_at = utcnow()
        audit.record(session, "user.updated", actor=ACTOR, user_id=user.id, ip=ip, attributes=changed)
    if profile.active != user.is_active:
        user.updated_at = utcnow()
        if profile.active:
            accounts.enable_user(session, user, actor=ACTOR)
        else:
            accounts.disable_user(session, user, actor=ACTOR)
    session.flush()


def _claim_user_name(session: Session, user_name: str, claimant: User | None, ip: str | None) -> None:
    """Make sure ``user_name`` is free for ``claimant`` (None: a new account), or refuse."""
    holder = accounts.find_user(session, user_name)
    if holder is None or holder is claimant:
        return
    if holder.removed_at is not None:
        _release_user_name(session, holder, ip)
    elif _is_visible(session, holder):
        raise ScimError(409, "uniqueness", f"A user named {holder.username!r} already exists (id "
                        f"{holder.id}): userName is unique, whatever the case.")
    else:
        raise ScimError(409, "uniqueness", (
            f"Tokensmith already has a local account named {holder.username!r}, and provisioning "
            "does not take local accounts over. Provision this person under another userName, or "
            "have a Tokensmith administrator link the account to the identity provider "
            f"(tokensmith users link {holder.username} --subject SUBJECT) so that it manages it."
        ))


def _release_user_name(session: Session, holder: User, ip: str | None) -> None:
    """A deleted user's name goes to whoever is provisioned with it next, as a new account: the
    deleted one keeps its row under a name no person can type."""
    suffix = f"~removed-{holder.id}"
    previous, holder.username = holder.username, holder.username[: 64 - len(suffix)] + suffix
    audit.record(session, "user.renamed", actor=ACTOR, user_id=holder.id, ip=ip,
                 previous=previous, username=holder.username, reason="name provisioned again")
    session.flush()  # before the name is taken again: the unique index must see it free


# --- the resource as SCIM sees it -------------------------------------------------------------


def resource(user: User, public_url: str) -> dict[str, Any]:
    """The RFC 7643 User resource of an account."""
    given, family = _split_name(user.display_name)
    name = {"formatted": user.display_name, "givenName": given, "familyName": family}
    document: dict[str, Any] = {"schemas": [USER_SCHEMA], "id": str(user.id), "userName": user.username}
    if user.external_id:
        document["externalId"] = user.external_id
    if user.display_name:
        document["name"] = {key: value for key, value in name.items() if value}
        document["displayName"] = user.display_name
    document["emails"] = [{"value": user.email, "type": "work", "primary": True}]
    document["active"] = user.is_active
    document["meta"] = {
        "resourceType": "User",
        "created": timestamp(user.created_at),
        "lastModified": timestamp(user.updated_at or user.created_at),
        "location": f"{public_url.rstrip('/')}/scim/v2/Users/{user.id}",
    }
    return document


def list_response(page: Page, public_url: str) -> dict[str, Any]:
    resources = [resource(user, public_url) for user in page.users]
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


def timestamp(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _split_name(display_name: str | None) -> tuple[str | None, str | None]:
    given, _, family = (display_name or "").partition(" ")
    return given or None, family.strip() or None


def _joined(*parts: str | None) -> str | None:
    return " ".join(part.strip() for part in parts if part and part.strip()) or None


# --- request bodies ----------------------------------------------------------------------------


def _document(body: object, required: str, what: str) -> tuple[dict[str, Any], list[str]]:
    """The body as an object, and its "schemas" lowercased, which must list ``required``."""
    if not isinstance(body, dict):
        raise _invalid("invalidSyntax", f"The body must be a JSON object: {what}.")
    schemas = next((value for key, value in body.items() if key.lower() == "schemas"), None)
    if not isinstance(schemas, list) or not all(isinstance(item, str) for item in schemas):
        raise _invalid("invalidSyntax", f'The body needs "schemas": ["{required}"] ({what}).')
    lowered = [item.lower() for item in schemas]
    if required.lower() not in lowered:
        raise _invalid("invalidSyntax", f'"schemas" must list "{required}" ({what}).')
    return body, lowered


def _resource_attributes(body: object) -> dict[str, Any]:
    """The body's core attributes by lowercased name; extensions listed in "schemas" are dropped
    (accepted and ignored), any other unknown attribute is refused."""
    body, schemas = _document(body, USER_SCHEMA, "a SCIM User resource")
    for schema in schemas:
        if schema != USER_SCHEMA.lower() and not schema.startswith(EXTENSION_PREFIX):
            raise _invalid("invalidSyntax", f'"schemas" lists {schema[:100]!r}, which is not a User '
                           "schema extension; Tokensmith provisions users only.")
    attributes = {}
    for key, value in body.items():
        name = key.lower()
        if name == "schemas" or name in schemas:
            continue
        if name not in CORE_ATTRIBUTES:
            raise _invalid("invalidSyntax", f"Unknown attribute {key[:100]!r}: it is not in the core User "
                           'schema, nor an extension listed in "schemas".')
        attributes[name] = value
    return attributes


def _profile_from(attributes: dict[str, Any], *, active: bool) -> Profile:
    """A whole profile from a POST or PUT body (``active`` is the value when absent)."""
    if "username" not in attributes:
        raise _invalid("invalidValue", "userName is required: the person's login at the identity provider.")
    display_name = _display_name(attributes.get("displayname"))
    if display_name is None and attributes.get("name") is not None:
        display_name = _name_from(_lowered(attributes["name"], "name"), None)
    return Profile(
        user_name=_user_name(attributes["username"]),
        email=_email_from(attributes.get("emails")),
        display_name=display_name,
        external_id=_external_id(attributes.get("externalid")),
        active=_active(attributes["active"]) if "active" in attributes else active,
    )


def _lowered(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid("invalidValue", f"{what} must be an object.")
    return {str(key).lower(): item for key, item in value.items()}


def _string(value: object, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise _invalid("invalidValue", f"{what} must be a string.")


def _user_name(value: object) -> str:
    with _as_invalid_value():
        return accounts.validate_username(_string(value, "userName") or "")


def _display_name(value: object) -> str | None:
    with _as_invalid_value():
        return accounts.validate_display_name(_string(value, "displayName"))


def _external_id(value: object) -> str | None:
    external_id = _string(value, "externalId")
    if external_id is not None and len(external_id) > MAX_EXTERNAL_ID_LENGTH:
        raise _invalid("invalidValue", f"externalId has at most {MAX_EXTERNAL_ID_LENGTH} characters.")
    return external_id or None


def _active(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"  # Entra ID sends "True" and "False"
    raise _invalid("invalidValue", 'active is true or false (a boolean, or the string "True" or "False").')


def _email_address(value: object) -> str:
    with _as_invalid_value():
        return accounts.validate_email(_string(value, "The email address") or "")


def _email_from(value: object) -> str:
    """The address of the primary entry of ``emails``, else of the first."""
    entries = [value] if isinstance(value, dict) else value
    if not isinstance(entries, list) or not entries:
        raise _invalid("invalidValue", "A Tokensmith user needs an email address: send emails with at "
                       'least one entry, like [{"value": "ada@example.com", "type": "work", "primary": true}].')
    lowered = [_lowered(entry, "Each emails entry") for entry in entries]
    chosen = next((entry for entry in lowered if entry.get("primary") in (True, "true", "True")), lowered[0])
    return _email_address(chosen.get("value"))


def _name_from(parts: dict[str, Any], current: str | None) -> str | None:
    """The display name once the sub-attributes of ``name`` given are applied to ``current``."""
    given, family = _split_name(current)
    formatted = _string(parts.get("formatted"), "name.formatted")
    if formatted and formatted.strip():
        return _display_name(formatted)
    given = _string(parts["givenname"], "name.givenName") if "givenname" in parts else given
    family = _string(parts["familyname"], "name.familyName") if "familyname" in parts else family
    return _display_name(_joined(given, family))


# --- PATCH -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where a PATCH operation applies: ``attribute[filter].sub``, lowercased."""

    attribute: str
    filter: list[tuple[str, object]] | None = None
    sub: str | None = None


def _operations(body: object) -> list[tuple[str, Target | None, object]]:
    body, _ = _document(body, PATCH_OP_SCHEMA, "a SCIM PatchOp")
    operations = next((value for key, value in body.items() if key.lower() == "operations"), None)
    if not isinstance(operations, list) or not operations:
        raise _invalid("invalidSyntax", 'A PatchOp needs "Operations": a list of at least one operation.')
    parsed = []
    for operation in operations:
        fields = _lowered(operation, "Each operation") if isinstance(operation, dict) else None
        op = fields.get("op") if fields else None
        if not isinstance(op, str) or op.lower() not in PATCH_OPS:
            raise _invalid("invalidSyntax", 'Each operation has "op": "add", "replace" or "remove".')
        path = fields.get("path")
        if path is not None and not isinstance(path, str):
            raise _invalid("invalidPath", '"path" must be a string, like "active" or "name.givenName".')
        target = parse_path(path) if path else None
        if path and target is None:
            continue  # an extension's attribute: accepted, ignored
        parsed.append((op.lower(), target, fields.get("value")))
    return parsed


def parse_path(path: str) -> Target | None:
    """A PATCH path; None for an extension's attribute (accepted and ignored)."""
    text = path.strip()
    if text.lower().startswith(USER_SCHEMA.lower() + ":"):
        text = text[len(USER_SCHEMA) + 1:]
    elif text.lower().startswith(EXTENSION_PREFIX):
        return None
    match = _PATH.fullmatch(text)
    if match is None or match["attribute"].lower() not in CORE_ATTRIBUTES:
        raise _invalid("invalidPath", f"Unknown path {path[:100]!r}: Tokensmith keeps active, userName, "
                       "displayName, externalId, name.givenName, name.familyName, name.formatted, emails "
                       'and emails[type eq "work"].value.')
    try:
        filter = parse_filter(match["filter"]) if match["filter"] else None
    except ScimError:
        raise _invalid("invalidPath", f"The filter in the path {path[:100]!r} is not understood: "
                       'write it like emails[type eq "work"].value.') from None
    sub = match["sub"].lower() if match["sub"] else None
    return Target(match["attribute"].lower(), filter, sub)


def _apply(profile: Profile, op: str, target: Target | None, value: object) -> Profile:
    if target is None and op == "remove":
        raise _invalid("noTarget", 'A "remove" operation needs a "path" naming what to remove.')
    if target is None:
        for key, item in _lowered(value, 'The value of an operation without "path"').items():
            target = parse_path(key)  # keys are paths there: "active", "name.givenName", ...
            if target is not None:
                profile = _apply(profile, op, target, item)
        return profile
    if target.attribute in READ_ONLY:
        raise _invalid("mutability", f"{target.attribute} is read-only: Tokensmith assigns it.")
    if target.attribute not in STORED:
        return profile  # a core attribute Tokensmith does not keep: accepted, ignored
    if target.attribute == "emails":
        return _apply_to_email(profile, op, target, value)
    if target.attribute == "name":
        return _apply_to_name(profile, op, target, value)
    if target.filter or target.sub:
        raise _invalid("invalidPath", f"{target.attribute} has no sub-attributes or values to filter.")
    return _apply_to_simple(profile, op, target.attribute, value)


def _apply_to_simple(profile: Profile, op: str, attribute: str, value: object) -> Profile:
    if op == "remove" or value is None:
        if attribute in ("username", "active"):
            raise _invalid("invalidValue", f"{attribute} cannot be removed: every account has one.")
        value = None
    if attribute == "username":
        return replace(profile, user_name=_user_name(value))
    if attribute == "displayname":
        return replace(profile, display_name=_display_name(value))
    if attribute == "externalid":
        return replace(profile, external_id=_external_id(value))
    return replace(profile, active=_active(value))


def _apply_to_name(profile: Profile, op: str, target: Target, value: object) -> Profile:
    if target.filter or (target.sub and target.sub not in NAME_PARTS):
        raise _invalid("invalidPath", "name has the sub-attributes formatted, givenName and familyName.")
    if op == "remove":
        value = None
    if target.sub in (None, "formatted") and value is None:
        return replace(profile, display_name=None)
    parts = _lowered(value, "name") if target.sub is None else {target.sub: value}
    return replace(profile, display_name=_name_from(parts, profile.display_name))


def _apply_to_email(profile: Profile, op: str, target: Target, value: object) -> Profile:
    if target.filter is not None and not _is_work_email(target.filter):
        return profile  # another kind of address than the one Tokensmith keeps
    if target.sub not in (None, "value"):
        return profile  # type, primary, display: Tokensmith's one address is the primary work one
    if op == "remove" or value is None:
        raise _invalid("invalidValue", "The email address cannot be removed: a Tokensmith user needs one.")
    if target.sub == "value":
        return replace(profile, email=_email_address(value))
    return replace(profile, email=_email_from(value))


def _is_work_email(filter: list[tuple[str, object]]) -> bool:
    if len(filter) == 1 and filter[0][0] == "type" and isinstance(filter[0][1], str):
        return filter[0][1].lower() == "work"
    if filter == [("primary", True)]:
        return True
    raise _invalid("invalidPath", 'Filter emails by type, like emails[type eq "work"].value.')


# --- filters -----------------------------------------------------------------------------------


def parse_filter(text: str) -> list[tuple[str, object]]:
    """``attribute eq value`` comparisons joined by ``and``: [(lowercased attribute, value)]."""
    if len(text) > MAX_FILTER_LENGTH:
        raise _invalid("invalidFilter", f"The filter is longer than {MAX_FILTER_LENGTH} characters.")
    tokens = _filter_tokens(text)
    comparisons = []
    while tokens:
        if len(tokens) < 3 or tokens[0][0] != "word" or tokens[1] != ("word", "eq"):
            raise _invalid("invalidFilter", f"{FILTER_HELP}.")
        comparisons.append((str(tokens[0][1]).lower(), _filter_value(tokens[2])))
        tokens = tokens[3:]
        if tokens and (tokens[0] != ("word", "and") or len(tokens) == 1):
            raise _invalid("invalidFilter", f"{FILTER_HELP}.")
        tokens = tokens[1:]
    return comparisons


def _filter_tokens(text: str) -> list[tuple[str, object]]:
    tokens: list[tuple[str, object]] = []
    text, position = text.strip(), 0
    while position < len(text):
        match = _FILTER_TOKEN.match(text, position)
        if match is None or match["other"]:
            raise _invalid("invalidFilter", f"{FILTER_HELP}; no parentheses, brackets, or, not.")
        position = match.end()
        if match["string"]:
            try:
                tokens.append(("string", json.loads(match["string"])))
            except ValueError:
                raise _invalid("invalidFilter", "A quoted value in the filter is not a valid string.") from None
        else:
            word = match["word"]
            tokens.append(("word", word.lower() if word.lower() in ("eq", "and") else word))
    return tokens


def _filter_value(token: tuple[str, object]) -> object:
    kind, value = token
    if kind == "string":
        return value
    literals: dict[str, object] = {"true": True, "false": False, "null": None}
    if str(value).lower() in literals:
        return literals[str(value).lower()]
    if _ID.fullmatch(str(value)):
        return str(value)
    raise _invalid("invalidFilter", f'{FILTER_HELP}; quote text values with ".')


def _condition(attribute: str, value: object) -> ColumnElement[bool]:
    attribute = attribute.removeprefix(USER_SCHEMA.lower() + ":")
    if attribute == "active" and isinstance(value, (bool, str)):
        return User.is_active == _filter_active(value)
    if not isinstance(value, str):
        raise _invalid("invalidFilter", f"{FILTER_HELP}; compare {attribute[:60]} with a quoted string.")
    if attribute == "username":
        return func.lower(User.username) == value.lower()
    if attribute in ("emails.value", "emails"):
        return func.lower(User.email) == value.lower()
    if attribute == "externalid":
        return User.external_id == value
    if attribute == "id":
        return User.id == int(value) if _ID.fullmatch(value) and int(value) < 2**31 else false()
    raise _invalid("invalidFilter", f"{FILTER_HELP}; {attribute[:60]!r} is not one of them.")


def _filter_active(value: bool | str) -> bool:
    try:
        return _active(value)
    except ScimError:
        raise _invalid("invalidFilter", "Filter on active with true or false.") from None
