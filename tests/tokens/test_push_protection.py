"""Push protection's pieces: finding tokens in objects, one lookup for all of them, what the
pusher reads. (With real git over HTTP: tests/web/git/test_push_protection.py.)"""

from __future__ import annotations

import asyncio
import os
import subprocess
from datetime import timedelta

import pytest
from sqlalchemy import event

from tokensmith.audit import trail
from tokensmith.clock import utcnow
from tokensmith.store.models import PersonalToken
from tokensmith.tokens import format as token_format
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import push_protection
from tokensmith.tokens.push_protection import READ, Finding


def secrets_in(data: bytes, prefix: str = "tks_") -> list[str]:
    async def scan() -> list[str]:
        stream = asyncio.StreamReader(limit=READ)
        stream.feed_data(data)
        stream.feed_eof()
        pattern = push_protection.token_pattern(prefix)
        return [found async for found in push_protection._secrets_in(stream, len(data), pattern, prefix, scan=True)]

    return asyncio.run(scan())


def test_checksum_valid_tokens_are_found_anywhere_even_across_the_pieces_read():
    first, second = token_format.generate("tks_"), token_format.generate("tks_")
    look_alike = first[:-1] + ("A" if first[-1] != "A" else "B")
    # The second token straddles the first megabyte's end: read in two pieces, found once.
    data = (
        b"x" * 100
        + first.encode()
        + b"\n"
        + look_alike.encode()
        + b" tks_"
        + b"y" * 38
        + b"\x00" * (READ - 140 - 2 * len(first) - 50)
        + second.encode()
        + b"\x00" * 1000
    )
    assert READ - 60 < data.index(second.encode()) < READ
    assert secrets_in(data) == [first, second]


def test_a_custom_prefix_is_what_is_looked_for():
    token = token_format.generate("acme_")
    assert secrets_in(f"key={token}".encode(), prefix="acme_") == [token]
    assert secrets_in(f"key={token}".encode(), prefix="tks_") == []


def test_only_created_or_updated_refs_have_objects_to_read():
    zero, a, b = "0" * 40, "a" * 40, "b" * 40
    updates = f"{zero} {a} refs/heads/new\n{a} {zero} refs/heads/gone\n{a} {b} refs/tags/v1\nnonsense\n"
    assert push_protection.new_tips(updates) == [a, b]


def test_live_tokens_are_found_in_one_lookup_revoked_and_their_owners_told(
    db, keys, make_user, make_token, store_engine
):
    alice, bob = make_user(), make_user()
    live, live_row = make_token(alice, "ci")
    dead, dead_row = make_token(alice, "old")
    token_lifecycle.revoke_token(db, dead_row.id, alice.id, actor="tests")
    expired, expired_row = make_token(alice, "expired")
    expired_row.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    unknown = token_format.generate("tks_")
    findings = [Finding(secret, "f" * 40, "blob", "src/app.py") for secret in (live, dead, expired, unknown)]
    findings.append(Finding(live, "e" * 40, "commit", push_protection.COMMIT_MESSAGE))
    statements: list[str] = []
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(store_engine, "before_cursor_execute", listener)
    try:
        blocked = push_protection.block_live_tokens(
            db,
            keys,
            findings,
            {"f" * 40: "c" * 40, "e" * 40: "e" * 40},
            pusher_id=bob.id,
            pusher=bob.username,
            repository="acme",
        )
    finally:
        event.remove(store_engine, "before_cursor_execute", listener)
    # (Revoking a token then looks for its application tokens, by parent_id: not a lookup of findings.)
    lookups = [
        s
        for s in statements
        if s.lstrip().upper().startswith("SELECT")
        and "personal_tokens" in s
        and "WHERE personal_tokens.parent_id" not in s
    ]
    assert len(lookups) == 1, "one lookup for every finding"
    assert [(b.hint, b.commit, b.path, b.owned_by_pusher) for b in blocked] == [
        (live_row.hint, "c" * 40, "src/app.py", False),
        (live_row.hint, "e" * 40, "(commit message)", False),
    ]
    db.refresh(live_row)
    assert live_row.revoked_reason == "push_protection"
    assert db.get(PersonalToken, expired_row.id).revoked_at is None
    events = [e for e in trail.events_for_user(db, alice.id) if e.details.get("token_id") == live_row.id]
    assert sorted(e.action for e in events) == ["token.created", "token.push_blocked", "token.revoked"]
    text = push_protection.refusal(blocked, "http://example.test/tokens")
    assert live not in text and live[4:36] not in text
    assert "commit cccccccccccc  src/app.py  token " + live_row.hint in text
    assert "create a new token on My Tokens, http://example.test/tokens" in text and "Push again." in text


def git_objects(repository, files: dict[str, str]) -> str:
    """A commit of ``files`` written into ``repository`` with no ref pointing at it, as a push's
    objects are before the hook accepts them."""

    def git(*args, input=None):
        return subprocess.run(
            ["git", "--git-dir", str(repository), *args],
            input=input,
            capture_output=True,
            text=True,
            check=True,
            env={
                "PATH": os.environ["PATH"],
                "GIT_AUTHOR_NAME": "T",
                "GIT_AUTHOR_EMAIL": "t@e.test",
                "GIT_COMMITTER_NAME": "T",
                "GIT_COMMITTER_EMAIL": "t@e.test",
            },
        ).stdout.strip()

    entries = "".join(
        f"100644 blob {git('hash-object', '-w', '--stdin', input=content)}\t{name}\n" for name, content in files.items()
    )
    return git("commit-tree", git("mktree", input=entries), "-m", "pushed")


def test_a_push_is_read_object_by_object_and_too_many_look_alikes_refuse_it(tmp_path, monkeypatch):
    repository = tmp_path / "repo.git"
    subprocess.run(["git", "init", "-q", "--bare", str(repository)], check=True)
    live, other = token_format.generate("tks_"), token_format.generate("tks_")
    commit = git_objects(repository, {"a.env": f"A={live}\n", "b.txt": "nothing\n", "c.env": f"{live} {other}\n"})
    update = f"{'0' * 40} {commit} refs/heads/master\n"
    found = asyncio.run(push_protection.scan_push("git", repository, update, {}, "tks_"))
    assert sorted((f.secret == live, f.path, f.kind) for f in found) == [
        (False, "c.env", "blob"),
        (True, "a.env", "blob"),
        (True, "c.env", "blob"),
    ]
    monkeypatch.setattr(push_protection, "MAX_FINDINGS", 2)
    with pytest.raises(push_protection.TooManyFindings):
        asyncio.run(push_protection.scan_push("git", repository, update, {}, "tks_"))
    assert "more than 2 strings that look like Tokensmith tokens" in push_protection.too_many_findings()
