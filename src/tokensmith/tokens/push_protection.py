"""Push protection: a git push whose new objects carry a live token is refused.

Only the objects the push adds are read (``git rev-list --objects NEW --not --all`` in the
push's quarantine, where git holds them until the pre-receive hook accepts them), strings of the
token's shape with a valid checksum are picked out, and all of them are looked up in one
statement. A live one (anybody's) refuses the push: git then drops the quarantined objects and
no ref moves. The token is revoked too, since it is now in somebody's history (GitHub leaves
that to the owner; SPEC counts push protection among those who revoke a token for its owner).

A revoked or expired token, or a look-alike whose checksum is wrong, does not block.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from tokensmith.audit import trail
from tokensmith.audit.trail import AuditAction
from tokensmith.errors import CredentialMalformed
from tokensmith.store.server_keys import ServerKeys
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import listing as token_listing

ZERO = "0" * 40
READ = 1024 * 1024  # bytes of an object read at a time: a 1 GB blob is scanned in constant memory
# Distinct checksum-valid token strings in one push: a real push has a handful. Past this the push
# is refused rather than partly checked (look-alikes with valid checksums are easy to make).
MAX_FINDINGS = 10_000
COMMIT_MESSAGE, TAG_MESSAGE = "(commit message)", "(tag message)"


@dataclass(frozen=True)
class Finding:
    """A string with a token's shape and checksum, in object ``oid`` found at ``path``."""

    secret: str
    oid: str
    kind: str  # "blob", "commit" or "tag"
    path: str


@dataclass(frozen=True)
class Blocked:
    """A live token found in a push, as the pusher is told about it (never the token itself)."""

    hint: str
    commit: str
    path: str
    owned_by_pusher: bool
    name: str


class ScanFailed(Exception):
    """git could not list or read the push's objects."""


class TooManyFindings(Exception):
    """More token-shaped strings than one push is checked for."""


def token_pattern(prefix: str) -> re.Pattern[bytes]:
    return re.compile(re.escape(prefix.encode()) + rb"[0-9A-Za-z]{%d}" % token_format.BODY_LENGTH)


def new_tips(updates: str) -> list[str]:
    """The new object ids of a pre-receive hook's input (``old new ref`` lines), deletions left out."""
    tips = []
    for line in updates.splitlines():
        parts = line.split()
        if len(parts) == 3 and re.fullmatch(r"[0-9a-f]{40}", parts[1]) and parts[1] != ZERO:
            tips.append(parts[1])
    return tips


async def scan_push(
    git: str, repository: Path, updates: str, quarantine: Mapping[str, str], prefix: str
) -> list[Finding]:
    """Every checksum-valid token string in the objects this push adds to ``repository``.

    ``quarantine`` is the hook's GIT_OBJECT_DIRECTORY, GIT_ALTERNATE_OBJECT_DIRECTORIES and
    GIT_QUARANTINE_PATH: where the pushed objects wait. Objects reachable from any ref are
    in the repository already and were scanned when they came (or predate this protection).
    """
    tips = new_tips(updates)
    if not tips:
        return []
    env = {"PATH": "/usr/bin:/bin", **quarantine, "GIT_DIR": str(repository)}
    listing = await _run(
        git, env, ["rev-list", "--objects", "--stdin", "--not", "--all"], "\n".join(tips).encode() + b"\n"
    )
    paths: dict[str, str] = {}
    for line in listing.decode(errors="replace").splitlines():
        oid, _, path = line.partition(" ")
        paths.setdefault(oid, path)
    if not paths:
        return []
    return await _scan_objects(git, env, paths, token_pattern(prefix), prefix)


async def _run(git: str, env: dict[str, str], args: list[str], stdin: bytes) -> bytes:
    process = await asyncio.create_subprocess_exec(
        git,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin)
    if process.returncode != 0:
        raise ScanFailed(f"git {args[0]} exited {process.returncode}: {err.decode(errors='replace')[:300]}")
    return out


async def _scan_objects(
    git: str, env: dict[str, str], paths: dict[str, str], pattern: re.Pattern[bytes], prefix: str
) -> list[Finding]:
    """Read each object once through one ``git cat-file --batch``, trees skipped, as it streams."""
    process = await asyncio.create_subprocess_exec(
        git,
        "cat-file",
        "--batch",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        limit=READ,
    )
    stdin, stdout = process.stdin, process.stdout
    assert stdin is not None and stdout is not None  # both asked for as pipes

    async def ask() -> None:
        try:
            stdin.write("".join(f"{oid}\n" for oid in paths).encode())
            await stdin.drain()
        finally:
            stdin.close()

    asking = asyncio.create_task(ask())
    found: dict[tuple[str, str], Finding] = {}
    try:
        for _ in range(len(paths)):
            header = (await stdout.readline()).decode(errors="replace").split()
            if len(header) != 3:
                raise ScanFailed(f"git cat-file answered {' '.join(header)[:100]!r}")
            oid, kind, size = header[0], header[1], int(header[2])
            where = {"commit": COMMIT_MESSAGE, "tag": TAG_MESSAGE}.get(kind, paths.get(oid, ""))
            async for secret in _secrets_in(stdout, size, pattern, prefix, scan=kind != "tree"):
                found.setdefault((secret, oid), Finding(secret, oid, kind, where))
                if len(found) > MAX_FINDINGS:
                    raise TooManyFindings()
            await stdout.readexactly(1)  # the newline after each object
        await asking
    except (asyncio.IncompleteReadError, ValueError) as error:
        raise ScanFailed(f"git cat-file stopped early: {error}") from None
    finally:
        asking.cancel()
        if process.returncode is None:
            process.kill()
        await process.wait()
    return list(found.values())


async def _secrets_in(
    stream: asyncio.StreamReader, size: int, pattern: re.Pattern[bytes], prefix: str, *, scan: bool
) -> AsyncIterator[str]:
    """The checksum-valid token strings among ``size`` bytes of ``stream``, read a piece at a time;
    each piece keeps the end of the previous one, so a token split between two is found."""
    overlap = len(prefix) + token_format.BODY_LENGTH - 1
    tail = b""
    left = size
    while left:
        piece = await stream.readexactly(min(left, READ))
        left -= len(piece)
        if not scan:
            continue
        data = tail + piece
        for match in pattern.finditer(data):
            secret = match.group().decode("ascii")
            try:
                token_format.parse(secret, prefix)
            except CredentialMalformed:  # a look-alike, not a token
                continue
            yield secret
        tail = data[-overlap:]


async def introducing_commits(
    git: str, repository: Path, quarantine: Mapping[str, str], updates: str, findings: Iterable[Finding]
) -> dict[str, str]:
    """For each finding's object, the pushed commit that brought it: for a blob the oldest new
    commit whose changes add it (one ``git log --raw`` for all), for a commit itself."""
    commits = {finding.oid: finding.oid for finding in findings if finding.kind != "blob"}
    blobs = {finding.oid for finding in findings if finding.kind == "blob"}
    if not blobs:
        return commits
    env = {"PATH": "/usr/bin:/bin", **quarantine, "GIT_DIR": str(repository)}
    out = await _run(
        git,
        env,
        ["log", "--reverse", "--raw", "--no-abbrev", "--no-renames", "--format=commit %H", "--stdin", "--not", "--all"],
        "\n".join(new_tips(updates)).encode() + b"\n",
    )
    commit = "?"
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("commit "):
            commit = line.removeprefix("commit ")
        elif line.startswith(":"):  # ":100644 100644 <old> <new> A\tpath"
            fields = line.split("\t", 1)[0].split()
            if len(fields) >= 4 and fields[3] in blobs:
                commits.setdefault(fields[3], commit)
    return commits


def block_live_tokens(
    session: Session,
    keys: ServerKeys,
    findings: Iterable[Finding],
    commits: Mapping[str, str],
    *,
    pusher_id: int,
    pusher: str,
    repository: str,
) -> list[Blocked]:
    """Look up every finding in one statement; revoke each live one and tell its owner.
    ``commits`` maps each finding's object to the pushed commit that brought it."""
    findings = list(findings)
    live = token_listing.live_tokens_among(session, keys, (finding.secret for finding in findings))
    blocked, seen = [], set()
    for finding in findings:
        row = live.get(finding.secret)
        if row is None:
            continue
        commit = commits.get(finding.oid, "?")
        blocked.append(Blocked(row.hint, commit, finding.path, row.user_id == pusher_id, row.name))
        if row.id in seen:
            continue
        seen.add(row.id)
        where = token_lifecycle.PushedAt(repository=repository, commit=commit, path=finding.path)
        trail.record(
            session,
            AuditAction.TOKEN_PUSH_BLOCKED,
            actor=pusher,
            user_id=row.user_id,
            token_id=row.id,
            name=row.name,
            hint=row.hint,
            pusher=pusher,
            **where,
        )
        token_lifecycle.revoke_pushed_token(session, row, pusher=pusher, **where)
    return blocked


def too_many_findings() -> str:
    return (
        f"\nPush refused: it carries more than {MAX_FINDINGS:,} strings that look like Tokensmith tokens, "
        "more than a push is checked for. Nothing was changed.\nRemove them (test data can use a prefix "
        "other than the server's), then push again.\n"
    )


def refusal(blocked: list[Blocked], tokens_page_url: str) -> str:
    """What git shows the pusher, as ``remote:`` lines: where each token is, never the token."""
    lines = ["", "Push refused: it contains a live Tokensmith personal access token. Nothing was changed.", ""]
    for item in blocked:
        whose = f"your token “{item.name}”" if item.owned_by_pusher else "someone else's token; its owner is told"
        lines.append(f"  commit {item.commit[:12]}  {item.path}  token {item.hint} ({whose})")
    lines += [
        "",
        "The token has been revoked, since it is now in this history: nobody can use it any more.",
        f"1. Replace it wherever it was used: create a new token on My Tokens, {tokens_page_url}",
        "2. Remove it from the commits that carry it, e.g. `git rebase -i` (edit those commits) or",
        "   `git filter-repo --replace-text` for a longer history; keep secrets out of the repository",
        "   (an environment variable or a credential helper).",
        "3. Push again.",
        "",
    ]
    return "\n".join(lines)
