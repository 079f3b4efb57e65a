"""SCIM PATCH (RFC 7644 §3.5.2) on a person's profile, in the dialects Okta and Entra ID speak.

scim2-models' ``PatchOp`` applies the operations to the ``Profile``: ``add``, ``replace`` and
``remove`` of simple attributes, of ``name``'s sub-attributes (a value sets those it names and
leaves the others), of ``emails`` entries picked by a filter, and the one primary address (an
entry made primary makes the others not primary). What Tokensmith reads differently is here,
each operation turned into those scim2-models applies:

- ``op`` in any case (Entra sends "Replace"); without a path, the value is an object of
  attributes or sub-attribute paths (Okta's ``{"active": false}``, ``{"name.givenName": "Ada"}``);
- values are checked by the account's rules first ("False", "True": Entra's booleans);
- attributes Tokensmith does not keep, and extensions, are accepted and ignored;
- an ``emails`` selector is one ``eq`` on type or primary; the entries it selects are replaced
  whole; ``add`` or ``replace`` of an address by a type no entry has appends one of that type
  (how Entra gives a person a new kind of address); removing an address removes its entry, and
  the account keeps at least one.

The operations apply in order to a copy of the profile: a request is all or nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import ValidationError
from scim2_models import Error, PatchOp, Path, SCIMException

from tokensmith.scim.filters import Target, parse_path
from tokensmith.scim.protocol import (
    EMAIL_PARTS,
    NAME_PARTS,
    PATCH_OP_SCHEMA,
    ScimError,
    boolean,
    invalid,
    lowered,
    message,
)
from tokensmith.scim.resources import (
    MAX_EMAIL_TYPE_LENGTH,
    MAX_EMAILS,
    MAX_NAME_LENGTH,
    NAME_KEPT,
    Profile,
    display_name,
    email_address,
    email_entry,
    emails_from,
    external_id,
    name_changes,
    text,
    user_name,
)

PATCH_OPS = frozenset({"add", "replace", "remove"})
READ_ONLY = frozenset({"id", "meta"})
# The simple attributes Tokensmith keeps, and how a value of each is read.
SIMPLE: dict[str, Callable[[object], object]] = {
    "username": user_name,
    "displayname": display_name,
    "externalid": external_id,
    "active": lambda value: boolean(value, "active"),
}
Operation = tuple[str, Target | None, object]


def patched(profile: Profile, body: object) -> Profile:
    """A copy of ``profile`` with the PatchOp ``body`` applied, or a refusal."""
    result = profile.model_copy(deep=True)
    for op, target, value in operations(body):
        for operation in _applicable(result, op, target, value):
            _apply(result, operation)
            if not result.emails:
                raise invalid("invalidValue", "The email address cannot be removed: a Tokensmith user needs one.")
            if len(result.emails) > MAX_EMAILS:
                raise invalid("invalidValue", f"Tokensmith keeps at most {MAX_EMAILS} email addresses a person.")
    return result


def _apply(profile: Profile, operation: dict[str, Any]) -> None:
    """scim2-models applies one RFC 7644 operation to ``profile``, or refuses it in its words."""
    try:
        PatchOp[Profile].model_validate({"Operations": [operation]}).patch(profile)
        return
    except SCIMException as error:  # not expected either
        refusal = error.to_error()
    except ValidationError as error:  # not expected: the operation's values were checked
        refusal = Error.from_validation_errors(error)[0]
    raise ScimError(refusal.status or 400, refusal.scim_type, refusal.detail or "The operation was refused.")


def operations(body: object) -> list[Operation]:
    """The operations of a PatchOp, their paths parsed; those on extensions are left out."""
    body, _ = message(body, PATCH_OP_SCHEMA, "a SCIM PatchOp")
    listed = next((value for key, value in body.items() if key.lower() == "operations"), None)
    if not isinstance(listed, list) or not listed:
        raise invalid("invalidSyntax", 'A PatchOp needs "Operations": a list of at least one operation.')
    parsed = []
    for operation in listed:
        fields = lowered(operation, "Each operation") if isinstance(operation, dict) else {}
        op = fields.get("op")
        if not isinstance(op, str) or op.lower() not in PATCH_OPS:
            raise invalid("invalidSyntax", 'Each operation has "op": "add", "replace" or "remove".')
        path = fields.get("path")
        if path is not None and not isinstance(path, str):
            raise invalid("invalidPath", '"path" must be a string, like "active" or "name.givenName".')
        target = parse_path(path) if path else None
        if path and target is None:
            continue  # an extension's attribute: accepted, ignored
        parsed.append((op.lower(), target, fields.get("value")))
    return parsed


def _applicable(profile: Profile, op: str, target: Target | None, value: object) -> Iterator[dict[str, Any]]:
    """The RFC 7644 operations, with checked values, that ``op`` on ``target`` stands for. Read
    lazily: each is applied before the next is read, so a selector sees what came before it."""
    if target is None and op == "remove":
        raise invalid("noTarget", 'A "remove" operation needs a "path" naming what to remove.')
    if target is None:
        for key, item in lowered(value, 'The value of an operation without "path"').items():
            target = parse_path(key)  # keys are paths there: "active", "name.givenName", ...
            if target is not None:
                yield from _applicable(profile, op, target, item)
        return
    if target.attribute in READ_ONLY:
        raise invalid("mutability", f"{target.attribute} is read-only: Tokensmith assigns it.")
    if target.attribute == "emails":
        yield from _on_emails(profile, op, target, value)
    elif target.attribute == "name":
        yield from _on_name(op, target, value)
    elif target.attribute in SIMPLE:
        yield _on_simple(op, target, value)
    # any other core attribute: Tokensmith does not keep it; accepted, ignored


def _on_simple(op: str, target: Target, value: object) -> dict[str, Any]:
    attribute = target.attribute
    if target.selector or target.sub:
        raise invalid("invalidPath", f"{attribute} has no sub-attributes or values to filter.")
    if op != "remove" and value is not None:
        return {"op": op, "path": attribute, "value": SIMPLE[attribute](value)}
    if attribute in ("username", "active"):
        raise invalid("invalidValue", f"{attribute} cannot be removed: every account has one.")
    return {"op": "remove", "path": attribute}


def _on_name(op: str, target: Target, value: object) -> Iterator[dict[str, Any]]:
    if target.selector or (target.sub and target.sub not in NAME_PARTS):
        raise invalid("invalidPath", "name has the sub-attributes formatted, givenName and familyName.")
    if target.sub is not None and target.sub not in NAME_KEPT:
        return  # middleName, honorificPrefix, ...: accepted, ignored
    path = "name" if target.sub is None else f"name.{NAME_KEPT[target.sub]}"
    if op == "remove" or value is None:
        yield {"op": "remove", "path": path}
    elif target.sub is None:
        yield {"op": op, "path": path, "value": name_changes(value)}  # None clears a part
    else:
        yield {"op": op, "path": path, "value": text(value, path, MAX_NAME_LENGTH)}


def _on_emails(profile: Profile, op: str, target: Target, value: object) -> Iterator[dict[str, Any]]:
    if target.sub is not None and target.sub not in EMAIL_PARTS:
        raise invalid("invalidPath", "emails has the sub-attributes value, type, primary and display.")
    if target.sub == "display":
        return  # not kept: accepted, ignored
    selected = "emails" if target.selector is None else f"emails[{_filter(target.selector)}]"
    if op == "remove" or value is None:
        yield {"op": "remove", "path": selected if target.sub in (None, "value") else f"{selected}.{target.sub}"}
        return
    if target.selector is None and target.sub is None:
        yield {"op": op, "path": selected, "value": emails_from(value)}
        return
    entry = email_entry(value) if target.sub is None else {target.sub: _email_part(target.sub, value)}
    selection = Path[Profile](selected).get(profile) or []
    if not selection:
        yield {"op": "add", "path": "emails", "value": [_new_entry(target, entry)]}
    elif entry.get("primary") is True and len(selection) > 1:
        raise invalid("invalidValue", "At most one email is primary (RFC 7643 §2.4): this would make several.")
    elif target.sub is None:  # the entries selected are replaced whole
        yield {"op": op, "path": selected, "value": {**dict.fromkeys(EMAIL_PARTS), **entry}}
    else:
        yield {"op": op, "path": f"{selected}.{target.sub}", "value": entry[target.sub]}


def _filter(selector: tuple[str, object]) -> str:
    attribute, wanted = selector
    if not ((attribute == "type" and isinstance(wanted, str)) or (attribute == "primary" and isinstance(wanted, bool))):
        raise invalid("invalidPath", 'Filter emails by type, like emails[type eq "work"].value.')
    if wanted is False:
        return "not (primary eq true)"  # an entry sent without primary is not the primary one
    return f"{attribute} eq {json.dumps(wanted)}"


def _new_entry(target: Target, entry: dict[str, Any]) -> dict[str, Any]:
    """An entry for a selector no entry matches: only by type, and only with an address."""
    attribute, wanted = target.selector or ("", None)
    if attribute != "type" or "value" not in entry:
        raise invalid("noTarget", f"No email matches {attribute} eq {wanted!r}: there is nothing to change.")
    return {"type": wanted, **entry}


def _email_part(sub: str, value: object) -> object:
    if sub == "value":
        return email_address(value)
    if sub == "type":
        return text(value, "An email's type", MAX_EMAIL_TYPE_LENGTH)
    return boolean(value, "An email's primary")
