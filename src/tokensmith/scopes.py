"""The five scopes a token may hold, and how a token's limits read in words.

The vocabulary every part shares: tokens are held to these scopes (tokens' limits), the audit
trail and the mail to owners say them, the pages offer them. Pure: no I/O, nothing of the domain (its errors aside).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from tokensmith.errors import InvalidInput

# The five scopes, in the order they are shown, each with the sentence that explains it.
SCOPES: dict[str, str] = {
    "api:read": "Read the REST API: your tokens, your projects, who you are.",
    "api:write": "Change things through the API: revoke or rotate tokens, register instances, trigger releases.",
    "git:read": "Clone and fetch your projects' Git repositories.",
    "git:write": "Push to your projects' Git repositories (includes git:read).",
    "maven:read": "Download artifacts from the Studio Maven repository.",
}
ALL_SCOPES: tuple[str, ...] = tuple(SCOPES)
READ_ONLY: tuple[str, ...] = ("api:read", "git:read", "maven:read")
# A scope that brings others with it: pushing without fetching is of no use to git.
IMPLIES = {"git:write": ("git:read",)}


def validate(scopes: Iterable[str]) -> tuple[str, ...]:
    """The scopes asked for, known and non-empty, with what they imply, in SCOPES' order."""
    asked = {scope.strip() for scope in scopes}
    asked.discard("")
    unknown = sorted(asked - set(SCOPES))
    if unknown:
        raise InvalidInput(
            f"Unknown scope {', '.join(repr(scope[:40]) for scope in unknown[:5])}: a scope is one of "
            f"{', '.join(ALL_SCOPES)}."
        )
    if not asked:
        raise InvalidInput(f"Choose at least one scope: {', '.join(ALL_SCOPES)}.")
    for scope in list(asked):
        asked.update(IMPLIES.get(scope, ()))
    return tuple(scope for scope in ALL_SCOPES if scope in asked)


def describe_scopes(scopes: Sequence[str]) -> str:
    if tuple(scopes) == ALL_SCOPES:
        return "Everything"
    if tuple(scopes) == READ_ONLY:
        return "Read only"
    return ", ".join(scopes)


def describe_projects(projects: Sequence[str] | None) -> str:
    return "every project of its owner" if projects is None else ", ".join(projects)


def describe_allowed_ips(allowed_ips: Sequence[str] | None) -> str:
    return "anywhere" if allowed_ips is None else ", ".join(allowed_ips)


def describe(scopes: Sequence[str], projects: Sequence[str] | None, allowed_ips: Sequence[str] | None) -> str:
    """The three limits in one line, as the audit trail, the mail and the server's shell say them."""
    return (
        f"scopes: {describe_scopes(scopes)}; projects: {describe_projects(projects)}; "
        f"from: {describe_allowed_ips(allowed_ips)}"
    )
