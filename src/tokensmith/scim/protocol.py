"""The fixed words of SCIM 2.0, from scim2-models: the URNs of its schemas and messages, the
attributes of the core User schema, and the error document.

Every SCIM module refuses in these terms (RFC 7644 §3.12), so that the web layer answers any
refusal, from a filter's syntax to a userName already taken, the same way. The words of a
refusal are Tokensmith's own: they say what Tokensmith takes, which scim2-models cannot know.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pydantic import BaseModel
from scim2_models import Email, EnterpriseUser, Error, ListResponse, Name, PatchOp, SearchRequest, User

from tokensmith.errors import InvalidInput

USER_SCHEMA = str(User.__schema__)
ENTERPRISE_USER_SCHEMA = str(EnterpriseUser.__schema__)
EXTENSION_PREFIX = "urn:ietf:params:scim:schemas:extension:"
PATCH_OP_SCHEMA = str(PatchOp.__schema__)
SEARCH_REQUEST_SCHEMA = str(SearchRequest.__schema__)
LIST_RESPONSE_SCHEMA = str(ListResponse.__schema__)
ERROR_SCHEMA = str(Error.__schema__)


def attribute_names(model: type[BaseModel]) -> frozenset[str]:
    """The attributes of a scim2-models class as SCIM names them, lowercased: SCIM attribute
    names are case-insensitive (RFC 7643 §2.1)."""
    return frozenset((field.serialization_alias or name).lower() for name, field in model.model_fields.items())


# RFC 7643 §4.1 and §3.1.
CORE_ATTRIBUTES = attribute_names(User) - {"schemas"}
NAME_PARTS = attribute_names(Name)
EMAIL_PARTS = attribute_names(Email)


class ScimError(Exception):
    """A refusal in RFC 7644 §3.12 terms: an HTTP status, a ``scimType`` (or None) and words."""

    def __init__(self, status: int, scim_type: str | None, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.scim_type = scim_type
        self.detail = detail

    def document(self) -> dict[str, Any]:
        return Error(status=self.status, scim_type=self.scim_type, detail=self.detail).model_dump()


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
