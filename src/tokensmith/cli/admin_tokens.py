"""The server shell's commands for tokens met outside their owner's hands, and for tokens
nobody uses: ``tokensmith tokens lookup [--revoke]`` (whose is this string?) and
``tokensmith tokens sweep`` (unused tokens retired, expiry and retirement notices queued, now).
"""

from __future__ import annotations

import getpass
import json
import sys
from typing import Annotated, Any

import typer

from tokensmith.cli.admin import ACTOR, admin_store, note
from tokensmith.cli.server_commands import tokens_app
from tokensmith.client.output import columns
from tokensmith.clock import display
from tokensmith.errors import InvalidInput
from tokensmith.scopes import describe as describe_limits
from tokensmith.tokens import lookup as token_lookup
from tokensmith.tokens import sweep as token_sweep

MAX_STDIN = 1024 * 1024  # bytes of pasted text read at most


def _pasted() -> str:
    """The values to look up, from stdin only (an argument would land in the shell's history and
    the process list): piped, or typed at a hidden prompt, one a line, an empty line to end."""
    if not sys.stdin.isatty():
        return sys.stdin.read(MAX_STDIN)
    lines = []
    while line := getpass.getpass("Token (hidden; an empty line to finish): ", stream=sys.stderr):
        lines.append(line)
    return "\n".join(lines)


def _as_record(entry: token_lookup.LookedUp) -> dict[str, Any]:
    row = entry.token
    record: dict[str, Any] = {"position": entry.position, "hint": entry.hint, "found": row is not None}
    record["state"] = entry.state()
    if row is None:
        return record
    return {
        **record,
        "revoked_now": entry.revoked_now,
        "token_id": row.id,
        "owner": row.owner.username,
        "name": row.name,
        "scopes": list(row.scopes),
        "projects": row.projects,
        "allowed_ips": row.allowed_ips,
        "created_at": row.created_at.isoformat(),
        "expires_at": row.expires_at and row.expires_at.isoformat(),
        "last_used_at": row.last_used_at and row.last_used_at.isoformat(),
        "last_used_ip": row.last_used_ip,
        "last_used_agent": row.last_used_agent,
        "last_used_ips": [
            {
                "ip": seen.ip,
                "first_seen_at": seen.first_seen_at.isoformat(),
                "last_seen_at": seen.last_seen_at.isoformat(),
                "agent": seen.agent,
            }
            for seen in entry.addresses
        ],
    }


def _as_line(entry: token_lookup.LookedUp) -> list[str]:
    row = entry.token
    if row is None:
        return [str(entry.position), entry.hint, "-", "-", entry.state(), "-", "-"]
    used = (
        f"{display(row.last_used_at)} from {row.last_used_ip or 'an unknown address'}"
        + (f" ({row.last_used_agent})" if row.last_used_agent else "")
        if row.last_used_at
        else "never"
    )
    return [
        str(entry.position),
        row.hint,
        row.owner.username,
        row.name,
        entry.state(),
        describe_limits(row.scopes, row.projects, row.allowed_ips),
        used,
    ]


@tokens_app.command("lookup")
def tokens_lookup(
    revoke: Annotated[
        bool, typer.Option("--revoke", help="Revoke every live token found (reason: admin; each owner is told).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    given: Annotated[list[str] | None, typer.Argument(hidden=True, show_default=False)] = None,
) -> None:
    """Whose are these tokens? Reads them on stdin (one a line, never as arguments) and prints
    each one's owner, name, state, limits and last use; never the tokens themselves."""
    if given:  # refused without quoting them: they may be tokens
        raise InvalidInput(
            f"`tokens lookup` reads tokens on stdin, never as arguments ({len(given)} given), which would stay "
            "in the shell's history and show in the process list: pipe them in, or type them at its prompt."
        )
    text = _pasted()
    with admin_store() as ctx:
        values = token_lookup.values_in(text, ctx.settings.token_prefix)
        found = token_lookup.look_up(
            ctx.session, ctx.keys, values, prefix=ctx.settings.token_prefix, revoke_by=ACTOR if revoke else None
        )
        records = [_as_record(entry) for entry in found]
        lines = [_as_line(entry) for entry in found]
    if as_json:
        typer.echo(json.dumps(records, indent=2, ensure_ascii=False))
    else:
        typer.echo(columns(["#", "TOKEN", "OWNER", "NAME", "STATE", "LIMITS", "LAST USED"], lines))
    ours = sum(record["found"] for record in records)
    revoked = sum(bool(record.get("revoked_now")) for record in records)
    note(
        f"Looked up {len(records)} value(s): {ours} token(s) of this server"
        + (f", {revoked} revoked now (each owner told)." if revoke else ".")
    )


@tokens_app.command("sweep")
def tokens_sweep() -> None:
    """Now, rather than at the server's next round: revoke the tokens unused for
    TOKENSMITH_REVOKE_UNUSED_AFTER_DAYS, and queue the notices due (tokens about to be revoked
    unused, or to expire in 30, 7 or 1 days, or just expired). Waits for a round a server has
    under way."""
    with admin_store() as ctx:
        done = token_sweep.sweep_in(ctx.session, ctx.settings)
        after_days = ctx.settings.revoke_unused_after_days
    note(done.summary(after_days))
