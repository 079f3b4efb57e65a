"""The fixed words of SCIM 2.0: the URNs of its schemas and messages, and its error document.

Every SCIM module refuses in these terms (RFC 7644 §3.12), so that the web layer answers any
refusal, from a filter's syntax to a userName already taken, the same way.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from tokensmith.errors import InvalidInput

USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE_USER_SCHEMA = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
EXTENSION_PREFIX = "urn:ietf:params:scim:schemas:extension:"
PATCH_OP_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH_REQUEST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
LIST_RESPONSE_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"

# RFC 7643 §4.1 and §3.1, lowercased: SCIM attribute names are case-insensitive.
CORE_ATTRIBUTES = frozenset(
    {
        "id",
        "externalid",
        "meta",
        "username",
        "name",
        "displayname",
        "nickname",
        "profileurl",
        "title",
        "usertype",
        "preferredlanguage",
        "locale",
        "timezone",
        "active",
        "password",
        "emails",
        "phonenumbers",
        "ims",
        "photos",
        "addresses",
        "groups",
        "entitlements",
        "roles",
        "x509certificates",
    }
)
NAME_PARTS = frozenset({"formatted", "familyname", "givenname", "middlename", "honorificprefix", "honorificsuffix"})
EMAIL_PARTS = frozenset({"value", "type", "primary", "display"})


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


def invalid(scim_type: str, detail: str) -> ScimError:
    return ScimError(400, scim_type, detail)


def message(body: object, required: str, what: str) -> tuple[dict[str, Any], list[str]]:
    """The body as an object, and its "schemas" lowercased, which must list ``required``."""
    if not isinstance(body, dict):
        raise invalid("invalidSyntax", f"The body must be a JSON object: {what}.")
    schemas = next((value for key, value in body.items() if key.lower() == "schemas"), None)
    if not isinstance(schemas, list) or not all(isinstance(item, str) for item in schemas):
        raise invalid("invalidSyntax", f'The body needs "schemas": ["{required}"] ({what}).')
    lowered_schemas = [item.lower() for item in schemas]
    if required.lower() not in lowered_schemas:
        raise invalid("invalidSyntax", f'"schemas" must list "{required}" ({what}).')
    return body, lowered_schemas


def lowered(value: object, what: str) -> dict[str, Any]:
    """An object's members by lowercased name: SCIM attribute names are case-insensitive."""
    if not isinstance(value, dict):
        raise invalid("invalidValue", f"{what} must be an object.")
    return {str(key).lower(): item for key, item in value.items()}


def string(value: object, what: str) -> str | None:
    if value is None or isinstance(value, str):
        return value
    raise invalid("invalidValue", f"{what} must be a string.")


def boolean(value: object, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"  # Entra ID sends "True" and "False"
    raise invalid("invalidValue", f'{what} is true or false (a boolean, or the string "True" or "False").')


@contextmanager
def as_invalid_value() -> Iterator[None]:
    """The account rules' own refusals (a bad username, email, name) as ``invalidValue``."""
    try:
        yield
    except InvalidInput as error:
        raise invalid("invalidValue", error.message) from None
