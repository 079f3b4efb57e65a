"""What one token may open: its scopes, its projects and the addresses it may come from.

Chosen when the token is made (``validate``), stored on the token's row, read with it by the one
lookup of every check, and enforced right after that lookup (``enforce``): a missing scope and a
disallowed address are refusals that say so; a project outside the token's list reads exactly
like a project that does not exist. CIDR blocks are checked and written in their normal form
once, when the token is made; a check parses a block list at most once per process
(``_ranges``: a pure function of the stored text, which nothing can make stale).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from tokensmith import scopes as scope_words
from tokensmith.errors import AddressNotAllowed, InsufficientScope, InvalidInput, NotFound, ProjectNotFound
from tokensmith.identity import VerifiedToken
from tokensmith.scopes import ALL_SCOPES

# Which scopes a token asks for, checked: the vocabulary's own rule (trusted publishers use it too).
validate_scopes = scope_words.validate

MAX_PROJECTS = 100
MAX_ADDRESS_BLOCKS = 50

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Limits:
    """A token's three limits. ``projects`` and ``allowed_ips`` None mean every project the
    owner can reach (now and later) and anywhere."""

    scopes: tuple[str, ...] = ALL_SCOPES
    projects: tuple[str, ...] | None = None
    allowed_ips: tuple[str, ...] | None = None


def missing_project(project_id: str) -> NotFound:
    """A project the token may not reach, in the words of one that does not exist."""
    return ProjectNotFound(project_id)


@dataclass(frozen=True)
class Need:
    """What one request needs of the token it comes with: a scope (None: any, as /api/v1/me)
    and the project it acts on, when there is one; ``hidden`` is the route's own words for a
    project it cannot show, so that a project outside the token's list reads like a missing one."""

    scope: str | None
    project: str | None = None
    hidden: Callable[[str], NotFound] = missing_project


# --- choosing ------------------------------------------------------------------------------------


def validate_projects(project_ids: Iterable[str] | None, reachable: Collection[str]) -> tuple[str, ...] | None:
    """None (every project, now and later), or project ids among ``reachable`` (those the owner
    is a member of), sorted."""
    if project_ids is None:
        return None
    wanted = sorted({project_id.strip() for project_id in project_ids} - {""})
    if not wanted:
        raise InvalidInput("Choose at least one project, or every project.")
    if len(wanted) > MAX_PROJECTS:
        raise InvalidInput(f"A token names at most {MAX_PROJECTS} projects; this one names {len(wanted)}.")
    beyond = [project_id for project_id in wanted if project_id not in reachable]
    if beyond:
        raise InvalidInput(
            f"You are not a member of {', '.join(repr(project_id[:64]) for project_id in beyond[:5])}: a token "
            "can only name projects its owner can reach."
        )
    return tuple(wanted)


def validate_allowed_ips(blocks: Iterable[str] | None) -> tuple[str, ...] | None:
    """None (anywhere), or CIDR blocks (an address alone is a block of one), IPv4 or IPv6,
    in their normal form."""
    if blocks is None:
        return None
    normal: list[str] = []
    for block in (item.strip() for item in blocks):
        if not block:
            continue
        normal.append(str(_parse_block(block)))
    if not normal:
        raise InvalidInput("Give at least one address block, or allow every address.")
    if len(normal) > MAX_ADDRESS_BLOCKS:
        raise InvalidInput(f"A token allows at most {MAX_ADDRESS_BLOCKS} address blocks; this one has {len(normal)}.")
    return tuple(dict.fromkeys(normal))


def _parse_block(block: str) -> IPNetwork:
    shown = repr(block[:60])
    try:
        return ipaddress.ip_network(block, strict=True)
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(block, strict=False)
    except ValueError:
        raise InvalidInput(
            f"{shown} is not an address or a CIDR block: write one like 203.0.113.0/24, 198.51.100.7 or 2001:db8::/32."
        ) from None
    raise InvalidInput(f"{shown} has bits set past its prefix: did you mean {network}?")


def validate(
    *,
    scopes: Iterable[str],
    projects: Iterable[str] | None,
    allowed_ips: Iterable[str] | None,
    reachable: Collection[str],
) -> Limits:
    """The limits asked for a new token, checked and in their normal form; ``reachable``: the
    ids of the projects its owner is a member of."""
    return Limits(validate_scopes(scopes), validate_projects(projects, reachable), validate_allowed_ips(allowed_ips))


def check_lifetime(expires_at: datetime | None, now: datetime, max_days: int | None) -> None:
    """A new token's expiry within the deployment's maximum lifetime, when there is one."""
    if max_days is None:
        return
    if expires_at is None:
        raise InvalidInput(
            f"Tokens on this server expire within {max_days} days: choose an expiration of at most {max_days} days."
        )
    if expires_at > now + timedelta(days=max_days, minutes=1):
        raise InvalidInput(f"Tokens on this server expire within {max_days} days: choose an earlier expiration.")


# --- checking: on every request, right after the lookup ---------------------------------------------


def enforce(
    scopes: Sequence[str], projects: Sequence[str] | None, allowed_ips: Sequence[str] | None, need: Need, ip: str | None
) -> None:
    """Refuse a request its token may not make: from elsewhere, without the scope, or on a project
    outside its list. In that order: an address refused tells nothing about the rest."""
    if allowed_ips is not None and not address_allowed(allowed_ips, ip):
        raise AddressNotAllowed(ip)
    if need.scope is not None and need.scope not in scopes:
        raise InsufficientScope(need.scope, tuple(scopes))
    if need.project is not None and not opens(projects, need.project):
        raise need.hidden(need.project)


def enforce_on(token: VerifiedToken, need: Need, ip: str | None) -> None:
    """``enforce`` for a token the check found: its limits came with the lookup, so this costs
    no query."""
    enforce(token.scopes, token.projects, token.allowed_ips, need, ip)


def opens(projects: Sequence[str] | None, project_id: str) -> bool:
    """Whether a token's project list (None: every project of its owner) opens ``project_id``.
    A listing shows only these: outside them a project reads like one that does not exist."""
    return projects is None or project_id in projects


def address_allowed(allowed_ips: Sequence[str], ip: str | None) -> bool:
    address = _address(ip) if ip else None
    if address is None:
        return False
    version, number = address
    return any(
        version == block_version and first <= number <= last
        for block_version, first, last in _ranges(tuple(allowed_ips))
    )


@functools.lru_cache(maxsize=1024)
def _ranges(blocks: tuple[str, ...]) -> tuple[tuple[int, int, int], ...]:
    """Blocks as (IP version, first address, last address): a check compares integers."""
    networks = [ipaddress.ip_network(block) for block in blocks]
    return tuple(
        (network.version, int(network.network_address), int(network.broadcast_address)) for network in networks
    )


@functools.lru_cache(maxsize=4096)
def _address(ip: str) -> tuple[int, int] | None:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return None
    # An IPv4 client seen by a dual-stack socket: judged by its IPv4 address.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.version, int(address)
