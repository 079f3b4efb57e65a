"""The SCIM User resource of an account: what the provider says of a person, and how it reads back.

A provider sends a person's ``displayName``, ``name`` (formatted, givenName, familyName) and
``emails`` (value, type, primary), and expects them back exactly as sent: that is the
``Profile``, scim2-models' ``User`` kept as sent in ``users.scim_profile``. Tokensmith's own
account has one display name and one email address, which the rest of the product (sign-in,
pages, mail) reads; they are derived from the profile: the display name is ``displayName``,
else ``name.formatted``, else "givenName familyName"; the email is the primary entry's, else the
first of type "work", else the first.

When the account's name or email changed elsewhere since (a sign-in at the provider brings the
person's current ones), the profile no longer describes the account and is not returned: the
resource then shows the account's own name and email, as it did before profiles were kept.

scim2-models writes the resource and leaves out what ``attributes`` or ``excludedAttributes``
(RFC 7644 §3.9) leave out. What a profile may hold is Tokensmith's to say: the values a
provider sends are checked here, by the account's rules, before they reach the profile.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any

import scim2_models
from pydantic import ValidationError
from scim2_models import Context, Meta, Name, Path, ResponseParameters

from tokensmith.accounts import users
from tokensmith.scim.filters import is_attribute_name
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


class Email(scim2_models.Email):
    """An address as sent. scim2-models' own would rewrite it (``Ada@Example.COM`` reads back
    ``Ada@example.com``, a type ``Work`` reads back ``work``); the account's rules check it."""

    value: str | None = None
    type: str | None = None  # type: ignore[assignment]


class Profile(scim2_models.User[Any]):
    """What SCIM says of a person, assembled before anything is written."""

    emails: list[Email] | None = None  # type: ignore[assignment]

    @classmethod
    def of(cls, user: User) -> Profile:
        """The profile last sent, while the account's name and email are still its own."""
        kept = cls._kept(user)
        if kept is not None and kept.account_display_name() == user.display_name and kept.account_email() == user.email:
            return kept
        return cls._of_account(user)

    @classmethod
    def _kept(cls, user: User) -> Profile | None:
        kept = user.scim_profile
        if not isinstance(kept, dict) or not kept.get("emails"):
            return None
        return cls._of(user, {**kept, "name": kept.get("name") or None})

    @classmethod
    def _of_account(cls, user: User) -> Profile:
        given, _, family = (user.display_name or "").partition(" ")
        name = {"formatted": user.display_name, "givenName": given or None, "familyName": family.strip() or None}
        return cls._of(
            user,
            {
                "emails": [{"value": user.email, "type": "work", "primary": True}],
                "displayName": user.display_name,
                "name": name if user.display_name else None,
            },
        )

    @classmethod
    def _of(cls, user: User, sent: dict[str, Any]) -> Profile:
        return cls.model_validate(
            {**sent, "userName": user.username, "externalId": user.external_id, "active": user.is_active}
        )

    def account_display_name(self) -> str | None:
        name = self.name or Name()
        if self.display_name or name.formatted:
            return self.display_name or name.formatted
        joined = " ".join(part for part in (name.given_name, name.family_name) if part)
        with as_invalid_value():
            return users.validate_display_name(joined)

    def account_email(self) -> str:
        emails = self.emails or []
        chosen = (
            next((email for email in emails if email.primary is True), None)
            or next((email for email in emails if (email.type or "").lower() == "work"), None)
            or emails[0]
        )
        return chosen.value or ""

    def kept(self) -> dict[str, Any]:
        """What ``users.scim_profile`` holds."""
        return {
            "displayName": self.display_name,
            "name": self.name.model_dump() if self.name else {},
            "emails": [email.model_dump() for email in self.emails or []],
        }


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
    profile = Profile.model_validate(
        {
            "userName": user_name(attributes["username"]),
            "emails": emails_from(attributes.get("emails")),
            "displayName": display_name(attributes.get("displayname")),
            "name": name_parts(attributes.get("name")) or None,
            "externalId": external_id(attributes.get("externalid")),
            "active": boolean(attributes["active"], "active") if "active" in attributes else active,
        }
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


def emails_from(value: object) -> list[dict[str, Any]]:
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
    emails = [email_entry(entry) for entry in entries]
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

# Which attributes an answer carries (RFC 7644 §3.9): only ``attributes`` (and ``id`` and
# ``schemas``, returned always), or all but ``excludedAttributes``. Names of attributes a
# resource does not have select nothing.
Shown = ResponseParameters[Profile]
EVERY_ATTRIBUTE = Shown()  # no attributes= nor excludedAttributes=


def shown(attributes: list[str] | None, excluded: list[str] | None) -> Shown:
    if attributes and excluded:
        raise invalid("invalidValue", "Send attributes or excludedAttributes, not both (RFC 7644 §3.4.2.5).")
    for parameter, names in (("attributes", attributes), ("excludedAttributes", excluded)):
        for name in names or ():
            if not is_attribute_name(name):
                raise invalid(
                    "invalidValue",
                    f"{parameter} names attributes, separated by commas, like "
                    f"userName,name.givenName: {name[:100]!r} is not one.",
                )
    if attributes:  # scim2-models would read "userName.x" as userName, and nothing as everything
        attributes = [name for name in attributes if Path[Profile](name).resolve()] or ["id"]
    try:
        return Shown.model_validate({"attributes": attributes, "excludedAttributes": excluded})
    except ValidationError:  # not expected: is_attribute_name read them as scim2-models does
        raise invalid("invalidValue", "attributes and excludedAttributes name attributes, like userName.") from None


def resource(user: User, public_url: str, only: Shown = EVERY_ATTRIBUTE) -> dict[str, Any]:
    """The RFC 7643 User resource of an account, with the attributes ``only`` shows."""
    profile = Profile.of(user)
    profile.id = str(user.id)
    profile.meta = Meta(
        resource_type="User",
        created=_to_the_second(user.created_at),
        last_modified=_to_the_second(user.updated_at or user.created_at),
        location=location(str(user.id), public_url),
    )
    return profile.model_dump(scim_ctx=Context.RESOURCE_QUERY_RESPONSE, response_parameters=only)


def location(user_id: str, public_url: str) -> str:
    return f"{public_url.rstrip('/')}/scim/v2/Users/{user_id}"


def _to_the_second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)  # written 2024-05-01T10:00:00Z
