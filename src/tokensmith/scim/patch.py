"""SCIM PATCH (RFC 7644 §3.5.2) on a person's profile, in the dialects Okta and Entra ID speak.

Operations ``add``, ``replace`` and ``remove``, in any case (Entra sends "Replace"), apply in
order to a ``Profile`` before anything is written, so that a request is all or nothing. Without
a path, the value is an object of attributes or sub-attribute paths (Okta's
``{"active": false}``, ``{"name.givenName": "Ada"}``).

``name`` is a complex attribute: a value sets the sub-attributes it names and leaves the others.
``emails`` is multi-valued: ``add`` appends, ``replace`` replaces the list, a selector
(``emails[type eq "work"]``, ``emails[primary eq true]``) picks the entries an operation changes;
``add`` or ``replace`` of an address by a type that no entry has appends one of that type, which
is how Entra ID gives a person a new kind of address. An entry made primary makes the others not
primary (RFC 7644 §3.5.2). The account keeps at least one address.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tokensmith.scim.filters import Equality, Target, parse_path
from tokensmith.scim.protocol import EMAIL_PARTS, NAME_PARTS, PATCH_OP_SCHEMA, boolean, invalid, lowered, message
from tokensmith.scim.resources import (
    MAX_EMAIL_TYPE_LENGTH,
    MAX_EMAILS,
    MAX_NAME_LENGTH,
    NAME_KEPT,
    Email,
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
STORED = frozenset({"username", "externalid", "name", "displayname", "emails", "active"})
READ_ONLY = frozenset({"id", "meta"})
Operation = tuple[str, Target | None, object]


def operations(body: object) -> list[Operation]:
    """The operations of a PatchOp, their paths parsed; those on extensions are left out."""
    body, _ = message(body, PATCH_OP_SCHEMA, "a SCIM PatchOp")
    listed = next((value for key, value in body.items() if key.lower() == "operations"), None)
    if not isinstance(listed, list) or not listed:
        raise invalid("invalidSyntax", 'A PatchOp needs "Operations": a list of at least one operation.')
    parsed = []
    for operation in listed:
        fields = lowered(operation, "Each operation") if isinstance(operation, dict) else None
        op = fields.get("op") if fields else None
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


def apply(profile: Profile, op: str, target: Target | None, value: object) -> Profile:
    if target is None and op == "remove":
        raise invalid("noTarget", 'A "remove" operation needs a "path" naming what to remove.')
    if target is None:
        for key, item in lowered(value, 'The value of an operation without "path"').items():
            target = parse_path(key)  # keys are paths there: "active", "name.givenName", ...
            if target is not None:
                profile = apply(profile, op, target, item)
        return profile
    if target.attribute in READ_ONLY:
        raise invalid("mutability", f"{target.attribute} is read-only: Tokensmith assigns it.")
    if target.attribute not in STORED:
        return profile  # a core attribute Tokensmith does not keep: accepted, ignored
    if target.attribute == "emails":
        return replace(profile, emails=_applied_to_emails(profile.emails, op, target, value))
    if target.attribute == "name":
        return replace(profile, name=_applied_to_name(profile.name, op, target, value))
    if target.selector or target.sub:
        raise invalid("invalidPath", f"{target.attribute} has no sub-attributes or values to filter.")
    return _apply_to_simple(profile, op, target.attribute, value)


def _apply_to_simple(profile: Profile, op: str, attribute: str, value: object) -> Profile:
    if op == "remove" or value is None:
        if attribute in ("username", "active"):
            raise invalid("invalidValue", f"{attribute} cannot be removed: every account has one.")
        value = None
    if attribute == "username":
        return replace(profile, user_name=user_name(value))
    if attribute == "displayname":
        return replace(profile, display_name=display_name(value))
    if attribute == "externalid":
        return replace(profile, external_id=external_id(value))
    return replace(profile, active=boolean(value, "active"))


# --- name --------------------------------------------------------------------------------------


def _applied_to_name(name: Any, op: str, target: Target, value: object) -> dict[str, str]:
    if target.selector or (target.sub and target.sub not in NAME_PARTS):
        raise invalid("invalidPath", "name has the sub-attributes formatted, givenName and familyName.")
    if target.sub is not None and target.sub not in NAME_KEPT:
        return dict(name)  # middleName, honorificPrefix, ...: accepted, ignored
    if op == "remove" or value is None:
        changes: dict[str, str | None] = (
            dict.fromkeys(NAME_KEPT.values()) if target.sub is None else {NAME_KEPT[target.sub]: None}
        )
    elif target.sub is None:
        changes = name_changes(value)
    else:
        kept = NAME_KEPT[target.sub]
        changes = {kept: text(value, f"name.{kept}", MAX_NAME_LENGTH)}
    merged = {**name, **changes}
    return {part: item for part, item in merged.items() if item is not None}


# --- emails ------------------------------------------------------------------------------------


def _applied_to_emails(emails: tuple[Email, ...], op: str, target: Target, value: object) -> tuple[Email, ...]:
    if target.sub is not None and target.sub not in EMAIL_PARTS:
        raise invalid("invalidPath", "emails has the sub-attributes value, type, primary and display.")
    if target.sub == "display":
        return emails  # not kept: accepted, ignored
    if target.selector is not None:
        _check_selector(target.selector)
    if op == "remove" or value is None:
        changed = _removed(emails, target)
    elif target.selector is None and target.sub is None:
        changed = _added(emails, emails_from(value)) if op == "add" else emails_from(value)
    else:
        changed = _set(emails, target, value)
    if not changed:
        raise invalid("invalidValue", "The email address cannot be removed: a Tokensmith user needs one.")
    if len(changed) > MAX_EMAILS:
        raise invalid("invalidValue", f"Tokensmith keeps at most {MAX_EMAILS} email addresses a person.")
    return changed


def _check_selector(selector: Equality) -> None:
    attribute, wanted = selector
    if not ((attribute == "type" and isinstance(wanted, str)) or (attribute == "primary" and isinstance(wanted, bool))):
        raise invalid("invalidPath", 'Filter emails by type, like emails[type eq "work"].value.')


def _selects(email: Email, selector: Equality | None) -> bool:
    attribute, wanted = selector or ("", None)
    if attribute == "type":
        return str(email.get("type", "")).lower() == str(wanted).lower()  # type is not case-exact
    return selector is None or (email.get("primary") is True) is wanted


def _removed(emails: tuple[Email, ...], target: Target) -> tuple[Email, ...]:
    if target.sub in (None, "value"):
        return tuple(email for email in emails if not _selects(email, target.selector))
    return tuple(
        {key: item for key, item in email.items() if key != target.sub} if _selects(email, target.selector) else email
        for email in emails
    )


def _added(emails: tuple[Email, ...], new: tuple[Email, ...]) -> tuple[Email, ...]:
    """``emails`` and the new entries not already there; a new primary entry is the only one."""
    added = tuple(email for email in new if email not in emails)
    if any(email.get("primary") is True for email in added):
        emails = _not_primary(emails)
    return emails + added


def _set(emails: tuple[Email, ...], target: Target, value: object) -> tuple[Email, ...]:
    """The selected entries (or that sub-attribute of them) replaced by ``value``."""
    change = email_entry(value) if target.sub is None else {target.sub: _email_part(target.sub, value)}
    selected = [index for index, email in enumerate(emails) if _selects(email, target.selector)]
    if not selected:
        return _added(emails, (_new_entry(target, change),))
    if change.get("primary") is True:
        emails = _not_primary(emails)

    def changed(email: Email) -> Email:
        merged = change if target.sub is None else {**email, **change}
        return {key: item for key, item in merged.items() if item is not None}  # a type set to ""

    return tuple(changed(email) if index in selected else email for index, email in enumerate(emails))


def _new_entry(target: Target, change: dict[str, Any]) -> Email:
    """An entry for a selector no entry matches: only by type, and only with an address."""
    attribute, wanted = target.selector or ("", None)
    if attribute != "type" or "value" not in change:
        raise invalid("noTarget", f"No email matches {attribute} eq {wanted!r}: there is nothing to change.")
    return {
        "value": change["value"],
        "type": change.get("type", wanted),
        **{key: item for key, item in change.items() if key not in ("value", "type")},
    }


def _email_part(sub: str, value: object) -> object:
    if sub == "value":
        return email_address(value)
    if sub == "type":
        return text(value, "An email's type", MAX_EMAIL_TYPE_LENGTH)
    return boolean(value, "An email's primary")


def _not_primary(emails: tuple[Email, ...]) -> tuple[Email, ...]:
    return tuple({**email, "primary": False} if email.get("primary") is True else email for email in emails)
