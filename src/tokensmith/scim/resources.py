"""The SCIM User resource of an account: what the provider says of a person, and how it reads back.

A provider sends a person's ``displayName``, ``name`` (formatted, givenName, familyName) and
``emails`` (value, type, primary), and expects them back exactly as sent: that is the
``Profile``, kept as sent in ``users.scim_profile``. Tokensmith's own account has one display
name and one email address, which the rest of the product (sign-in, pages, mail) reads; they are
derived from the profile: the display name is ``displayName``, else ``name.formatted``, else
"givenName familyName"; the email is the primary entry's, else the first of type "work", else
the first.

When the account's name or email changed elsewhere since (a sign-in at the provider brings the
person's current ones), the profile no longer describes the account and is not returned: the
resource then shows the account's own name and email, as it did before profiles were kept.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tokensmith.accounts import users
from tokensmith.scim.filters import AttributeName, parse_attribute_names
from tokensmith.scim.protocol import (
    CORE_ATTRIBUTES,
    EMAIL_PARTS,
    EXTENSION_PREFIX,
    NAME_PARTS,
    USER_SCHEMA,
    as_invalid_value,
    boolean,
    invalid,
    lowered,
    message,
    string,
)
from tokensmith.store.models import User

MAX_EXTERNAL_ID_LENGTH = 255
MAX_EMAILS = 20
MAX_EMAIL_TYPE_LENGTH = 64
MAX_NAME_LENGTH = 200
# The sub-attributes of name Tokensmith keeps, lowercased -> as written.
NAME_KEPT = {"formatted": "formatted", "givenname": "givenName", "familyname": "familyName"}
# RFC 7643 §7: returned "always" (and "schemas", which says what the document is).
ALWAYS_RETURNED = frozenset({"schemas", "id"})

Email = Mapping[str, Any]  # {"value": str, "type"?: str, "primary"?: bool}


@dataclass(frozen=True)
class Profile:
    """What SCIM may set on an account, assembled before anything is written."""

    user_name: str
    emails: tuple[Email, ...]
    display_name: str | None  # displayName, as sent
    name: Mapping[str, str]  # formatted, givenName, familyName: those sent
    external_id: str | None
    active: bool

    @classmethod
    def of(cls, user: User) -> Profile:
        """The profile last sent, while the account's name and email are still its own."""
        kept = _kept_profile(user)
        if kept is not None and kept.account_display_name() == user.display_name and kept.account_email() == user.email:
            return kept
        return cls._of_account(user)

    @classmethod
    def _of_account(cls, user: User) -> Profile:
        given, _, family = (user.display_name or "").partition(" ")
        name = {"formatted": user.display_name, "givenName": given or None, "familyName": family.strip() or None}
        return cls(
            user.username,
            ({"value": user.email, "type": "work", "primary": True},),
            user.display_name,
            {key: value for key, value in name.items() if value},
            user.external_id,
            user.is_active,
        )

    def account_display_name(self) -> str | None:
        if self.display_name or self.name.get("formatted"):
            return self.display_name or self.name["formatted"]
        joined = " ".join(part for part in (self.name.get("givenName"), self.name.get("familyName")) if part)
        with as_invalid_value():
            return users.validate_display_name(joined)

    def account_email(self) -> str:
        chosen = (
            next((email for email in self.emails if email.get("primary") is True), None)
            or next((email for email in self.emails if str(email.get("type", "")).lower() == "work"), None)
            or self.emails[0]
        )
        return chosen["value"]

    def kept(self) -> dict[str, Any]:
        """What ``users.scim_profile`` holds."""
        return {
            "displayName": self.display_name,
            "name": dict(self.name),
            "emails": [dict(email) for email in self.emails],
        }


def _kept_profile(user: User) -> Profile | None:
    kept = user.scim_profile
    if not isinstance(kept, dict) or not kept.get("emails"):
        return None
    return Profile(
        user.username,
        tuple(kept["emails"]),
        kept.get("displayName"),
        kept.get("name") or {},
        user.external_id,
        user.is_active,
    )


# --- reading a User resource (POST, PUT) -----------------------------------------------------


def resource_attributes(body: object) -> dict[str, Any]:
    """The body's core attributes by lowercased name; extensions listed in "schemas" are dropped
    (accepted and ignored), any other unknown attribute is refused."""
    body, schemas = message(body, USER_SCHEMA, "a SCIM User resource")
    for schema in schemas:
        if schema != USER_SCHEMA.lower() and not schema.startswith(EXTENSION_PREFIX):
            raise invalid(
                "invalidSyntax",
                f'"schemas" lists {schema[:100]!r}, which is not a User '
                "schema extension; Tokensmith provisions users only.",
            )
    attributes = {}
    for key, value in body.items():
        name = key.lower()
        if name == "schemas" or name in schemas:
            continue
        if name not in CORE_ATTRIBUTES:
            raise invalid(
                "invalidSyntax",
                f"Unknown attribute {key[:100]!r}: it is not in the core User "
                'schema, nor an extension listed in "schemas".',
            )
        attributes[name] = value
    return attributes


def profile_from(attributes: dict[str, Any], *, active: bool) -> Profile:
    """A whole profile from a POST or PUT body (``active`` is the value when absent)."""
    if "username" not in attributes:
        raise invalid("invalidValue", "userName is required: the person's login at the identity provider.")
    profile = Profile(
        user_name=user_name(attributes["username"]),
        emails=emails_from(attributes.get("emails")),
        display_name=display_name(attributes.get("displayname")),
        name=name_parts(attributes.get("name")),
        external_id=external_id(attributes.get("externalid")),
        active=boolean(attributes["active"], "active") if "active" in attributes else active,
    )
    profile.account_display_name()  # "givenName familyName" must make a display name too
    return profile


def user_name(value: object) -> str:
    with as_invalid_value():
        return users.validate_username(string(value, "userName") or "")


def display_name(value: object) -> str | None:
    with as_invalid_value():
        return users.validate_display_name(string(value, "displayName"))


def external_id(value: object) -> str | None:
    text = string(value, "externalId")
    if text is not None and len(text) > MAX_EXTERNAL_ID_LENGTH:
        raise invalid("invalidValue", f"externalId has at most {MAX_EXTERNAL_ID_LENGTH} characters.")
    return text or None


def name_changes(value: object) -> dict[str, str | None]:
    """The sub-attributes of ``name`` Tokensmith keeps that ``value`` sets (None: cleared);
    the others (middleName, honorificPrefix, ...) are accepted and ignored."""
    parts = _known(lowered(value, "name"), NAME_PARTS, "name")
    return {
        kept: text(parts[part], f"name.{kept}", MAX_NAME_LENGTH) for part, kept in NAME_KEPT.items() if part in parts
    }


def name_parts(value: object) -> dict[str, str]:
    if value is None:
        return {}
    return {part: item for part, item in name_changes(value).items() if item is not None}


def text(value: object, what: str, limit: int) -> str | None:
    """A short text as sent, surrounding spaces trimmed; empty is none."""
    value = (string(value, what) or "").strip()
    if len(value) > limit or any(unicodedata.category(char) == "Cc" for char in value):
        raise invalid("invalidValue", f"{what} is at most {limit} characters, without control characters.")
    return value or None


def emails_from(value: object) -> tuple[Email, ...]:
    """Every entry of ``emails`` (an object alone is one entry), at most one of them primary."""
    entries = [value] if isinstance(value, dict) else value
    if not isinstance(entries, list) or not entries:
        raise invalid(
            "invalidValue",
            "A Tokensmith user needs an email address: send emails with at "
            'least one entry, like [{"value": "ada@example.com", "type": "work", "primary": true}].',
        )
    if len(entries) > MAX_EMAILS:
        raise invalid("invalidValue", f"Tokensmith keeps at most {MAX_EMAILS} email addresses a person.")
    emails = tuple(email_entry(entry) for entry in entries)
    if sum(email.get("primary") is True for email in emails) > 1:
        raise invalid("invalidValue", "At most one email is primary (RFC 7643 §2.4).")
    return emails


def email_entry(value: object) -> dict[str, Any]:
    fields = _known(lowered(value, "Each emails entry"), EMAIL_PARTS, "emails")
    email: dict[str, Any] = {"value": email_address(fields.get("value"))}
    kind = text(fields.get("type"), "An email's type", MAX_EMAIL_TYPE_LENGTH)
    if kind is not None:
        email["type"] = kind
    if fields.get("primary") is not None:
        email["primary"] = boolean(fields["primary"], "An email's primary")
    return email


def _known(fields: dict[str, Any], known: frozenset[str], attribute: str) -> dict[str, Any]:
    """``fields``, if each is a sub-attribute of ``attribute`` in the core User schema."""
    for key in fields.keys() - known:
        raise invalid(
            "invalidSyntax", f"Unknown sub-attribute {attribute}.{key[:100]}: it is not in the core User schema."
        )
    return fields


def email_address(value: object) -> str:
    with as_invalid_value():
        return users.validate_email(string(value, "The email address") or "")


# --- the resource as SCIM sees it -------------------------------------------------------------


def resource(user: User, public_url: str) -> dict[str, Any]:
    """The RFC 7643 User resource of an account."""
    profile = Profile.of(user)
    document: dict[str, Any] = {"schemas": [USER_SCHEMA], "id": str(user.id), "userName": user.username}
    if user.external_id:
        document["externalId"] = user.external_id
    if profile.name:
        document["name"] = dict(profile.name)
    if profile.display_name:
        document["displayName"] = profile.display_name
    document["emails"] = [dict(email) for email in profile.emails]
    document["active"] = user.is_active
    document["meta"] = {
        "resourceType": "User",
        "created": timestamp(user.created_at),
        "lastModified": timestamp(user.updated_at or user.created_at),
        "location": location(str(user.id), public_url),
    }
    return document


def location(user_id: str, public_url: str) -> str:
    return f"{public_url.rstrip('/')}/scim/v2/Users/{user_id}"


def timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- attributes and excludedAttributes (RFC 7644 §3.9, §3.4.2.5) ---------------------------------


@dataclass(frozen=True)
class Projection:
    """Which attributes an answer carries: only ``attributes`` (and those always returned), or
    all but ``excluded``. Names of attributes a resource does not have select nothing."""

    attributes: tuple[AttributeName, ...] = ()
    excluded: tuple[AttributeName, ...] = ()

    @classmethod
    def of(cls, attributes: list[str] | None, excluded: list[str] | None) -> Projection:
        if attributes and excluded:
            raise invalid("invalidValue", "Send attributes or excludedAttributes, not both (RFC 7644 §3.4.2.5).")
        return cls(
            tuple(parse_attribute_names(attributes or [], "attributes")),
            tuple(parse_attribute_names(excluded or [], "excludedAttributes")),
        )

    def apply(self, document: dict[str, Any]) -> dict[str, Any]:
        if self.attributes:
            return _only(document, self.attributes)
        return _without(document, self.excluded) if self.excluded else document


EVERY_ATTRIBUTE = Projection()  # no attributes= nor excludedAttributes=


def _only(document: dict[str, Any], names: tuple[AttributeName, ...]) -> dict[str, Any]:
    wanted: dict[str, set[str] | None] = {}  # attribute -> its sub-attributes wanted, None: all
    for name in names:
        if name.sub is None or wanted.get(name.attribute, set()) is None:
            wanted[name.attribute] = None
        else:
            wanted.setdefault(name.attribute, set()).add(name.sub)  # type: ignore[union-attr]
    kept = {}
    for key, value in document.items():
        subs = wanted.get(key.lower(), ())
        if key.lower() in ALWAYS_RETURNED or subs is None:
            kept[key] = value
        elif subs and (selected := _sub_attributes(value, lambda sub, subs=subs: sub in subs)):
            kept[key] = selected
    return kept


def _without(document: dict[str, Any], names: tuple[AttributeName, ...]) -> dict[str, Any]:
    kept = dict(document)
    for name in names:
        key = next((key for key in kept if key.lower() == name.attribute), None)
        if key is None or name.attribute in ALWAYS_RETURNED:
            continue
        if name.sub is not None and not isinstance(kept[key], (dict, list)):
            continue  # "userName.x": a simple attribute has no sub-attribute to leave out
        remaining = None if name.sub is None else _sub_attributes(kept[key], lambda sub, name=name: sub != name.sub)
        if remaining:
            kept[key] = remaining
        else:
            del kept[key]
    return kept


def _sub_attributes(value: object, keep: Any) -> object:
    """``value`` (an object, or a list of them) with only the sub-attributes ``keep`` accepts."""
    if isinstance(value, dict):
        return {key: item for key, item in value.items() if keep(key.lower())}
    if isinstance(value, list):
        return [entry for entry in (_sub_attributes(item, keep) for item in value) if entry]
    return None
