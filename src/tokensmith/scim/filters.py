"""SCIM's filter and attribute-path language, narrowed to what Tokensmith answers.

The grammar is scim2-models' (RFC 7644 §3.4.2.2 filters, §3.5.2 PATCH paths and §3.10
attribute notation, with the RFC's errata, an LALR parser bounded in depth): a filter or a path
that does not parse is refused with the column it went wrong at. This module turns the syntax
trees into the few things Tokensmith does with them, and refuses the rest in words that say
what it takes:

- a list filter: ``eq`` comparisons joined by ``and``, on userName, emails.value, externalId,
  id and active (what Okta and Entra ID send to find a person);
- a PATCH path: ``attribute[selector].sub``, where the selector is one ``eq`` comparison
  (``emails[type eq "work"]``, ``emails[primary eq true]``);
- attribute names, for the ``attributes`` and ``excludedAttributes`` parameters (which
  scim2-models then applies).
"""

from __future__ import annotations

from dataclasses import dataclass

from scim2_models import InvalidFilterException, InvalidPathException, Path, ScimFilter
from scim2_models.path import AttrPath, CompareOperator, Comparison, LogicalExpr, LogicalOperator, ValuePath

from tokensmith.scim.protocol import CORE_ATTRIBUTES, EXTENSION_PREFIX, USER_SCHEMA, ScimError, invalid

MAX_FILTER_LENGTH = 1000
MAX_PATH_LENGTH = 1000
FILTER_HELP = (
    'Tokensmith filters users with "eq" on userName, externalId, id, emails.value or active, '
    'joined by "and", like userName eq "ada@example.com"'
)
PATH_HELP = (
    "Tokensmith keeps active, userName, displayName, externalId, name.givenName, name.familyName, "
    'name.formatted, emails and emails[type eq "work"].value'
)

# A filter is a list of (attribute, value): "username", "emails.value", ... lowercased.
Equality = tuple[str, object]


@dataclass(frozen=True)
class Target:
    """Where a PATCH operation applies: ``attribute[selector].sub``, names lowercased; the
    selector is one ``eq`` comparison, like ("type", "work") for ``emails[type eq "work"]``."""

    attribute: str
    selector: Equality | None = None
    sub: str | None = None


# --- filters -----------------------------------------------------------------------------------


def parse_filter(text: str) -> list[Equality]:
    """``attribute eq value`` comparisons joined by ``and``; an empty filter is no condition."""
    if len(text) > MAX_FILTER_LENGTH:
        raise invalid("invalidFilter", f"The filter is longer than {MAX_FILTER_LENGTH} characters.")
    if not text.strip():
        return []
    try:
        tree = ScimFilter(text).ast
    except InvalidFilterException as error:
        raise invalid("invalidFilter", f"{FILTER_HELP}; this filter does not parse ({error}).") from None
    if isinstance(tree, LogicalExpr) and tree.op is LogicalOperator.and_:
        return [_equality(term) for term in tree.terms]
    return [_equality(tree)]


def _equality(node: object) -> Equality:
    if not isinstance(node, Comparison) or node.op is not CompareOperator.eq:
        raise invalid("invalidFilter", f"{FILTER_HELP}; no other operator, no or, not, nor brackets.")
    attribute = node.attr_path.attr.lower()
    if node.attr_path.uri is not None and node.attr_path.uri.lower() != USER_SCHEMA.lower():
        attribute = f"{node.attr_path.uri}:{attribute}"  # refused by name where it is compared
    if node.attr_path.sub_attr:
        attribute += "." + node.attr_path.sub_attr.lower()
    return attribute, node.value


# --- PATCH paths -------------------------------------------------------------------------------


def parse_path(path: str) -> Target | None:
    """A PATCH path; None for an extension's attribute (accepted and ignored)."""
    if len(path) > MAX_PATH_LENGTH:
        raise invalid("invalidPath", f"A path has at most {MAX_PATH_LENGTH} characters.")
    node = _path_node(path)
    if isinstance(node, ValuePath):
        attr_path: AttrPath | None = node.attr_path
    else:
        attr_path = node if isinstance(node, AttrPath) else _attribute_before_brackets(path)
    if attr_path is not None and _is_extension(attr_path):
        return None
    if attr_path is None or not _is_core(attr_path) or attr_path.attr.lower() not in CORE_ATTRIBUTES:
        raise invalid("invalidPath", f"Unknown path {path[:100]!r}: {PATH_HELP}.")
    if isinstance(node, ValuePath):
        return Target(attr_path.attr.lower(), _selector(node, path), _lowered(node.sub_attr))
    if node is None:
        raise _selector_not_understood(path)
    return Target(attr_path.attr.lower(), None, _lowered(attr_path.sub_attr))


def _path_node(path: str) -> object:
    try:
        return Path(path.strip()).ast
    except InvalidPathException:
        return None


def _attribute_before_brackets(path: str) -> AttrPath | None:
    """The attribute of a path whose value selection does not parse, to tell an unknown
    attribute from a selector Tokensmith does not understand."""
    head, bracket, _ = path.strip().partition("[")
    node = _path_node(head) if bracket else None
    return node if isinstance(node, AttrPath) and node.sub_attr is None else None


def _selector(node: ValuePath, path: str) -> Equality:
    selector = node.val_filter
    if (
        not isinstance(selector, Comparison)
        or selector.op is not CompareOperator.eq
        or selector.attr_path.uri
        or selector.attr_path.sub_attr
    ):
        raise _selector_not_understood(path)
    return selector.attr_path.attr.lower(), selector.value


def _selector_not_understood(path: str) -> ScimError:
    return invalid(
        "invalidPath",
        f'The filter in the path {path[:100]!r} is not understood: write it like emails[type eq "work"].value.',
    )


def _lowered(name: str | None) -> str | None:
    return name.lower() if name else None


def _is_extension(attr_path: AttrPath) -> bool:
    return attr_path.uri is not None and attr_path.uri.lower().startswith(EXTENSION_PREFIX)


def _is_core(attr_path: AttrPath) -> bool:
    return attr_path.uri is None or attr_path.uri.lower() == USER_SCHEMA.lower()


# --- attributes and excludedAttributes ---------------------------------------------------------


def is_attribute_name(name: str) -> bool:
    """Whether ``name`` is in RFC 7644 §3.10 attribute notation (``name.givenName``, with or
    without the schema in front), as ``attributes`` and ``excludedAttributes`` take them."""
    return len(name) <= MAX_PATH_LENGTH and isinstance(_path_node(name), AttrPath)
