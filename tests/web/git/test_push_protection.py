"""Push protection with real git over real HTTP: a push carrying a live token is refused before
any ref moves, with `remote:` lines that say where and what to do; nothing else is."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest
from sqlalchemy import select

from tests.support.git import GitUser
from tests.support.ledger import remember
from tokensmith.audit import trail
from tokensmith.store.models import AuditEvent, PersonalToken
from tokensmith.tokens import format as token_format

PASSWORD = "push person's password"


@pytest.fixture(scope="module")
def project(server) -> dict[str, str]:
    """A project alice and bob may both push to, with one commit in it."""
    suffix = uuid.uuid4().hex[:6]
    names = {role: f"{role}-{suffix}" for role in ("alice", "bob")}
    for name in names.values():
        server.create_user(name, password=PASSWORD)
    project_id = f"guarded-{suffix}"
    server.create_project(project_id, "com.acme.guarded", owner=names["alice"], members={names["bob"]: "write"})
    bare = server.data_dir / "git" / f"{project_id}.git"
    return {"id": project_id, "url": f"{server.base_url}/git/{project_id}.git", "bare": str(bare), **names}


def pusher(server, tmp_path: Path, username: str) -> GitUser:
    user = GitUser(tmp_path / username, username, server.create_token(username, f"push {uuid.uuid4().hex[:8]}"))
    user.remember_credentials(server.base_url)
    return user


def clone(user: GitUser, project, work: Path) -> Path:
    user.git("clone", project["url"], str(work))
    if not user.git("rev-parse", "--verify", "-q", "HEAD", cwd=work, check=False).stdout.strip():
        commit(user, work, {"README.md": "guarded\n"})
        user.git("push", "origin", "HEAD:master", cwd=work)
    return work


def commit(user: GitUser, work: Path, files: dict[str, str | None], message: str = "change") -> str:
    for name, content in files.items():
        path = work / name
        if content is None:
            user.git("rm", "-q", name, cwd=work)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        user.git("add", name, cwd=work)
    user.git("commit", "-q", "-m", message, cwd=work)
    return user.git("rev-parse", "HEAD", cwd=work).stdout.strip()


def server_head(project) -> str:
    return subprocess.run(
        ["git", "--git-dir", project["bare"], "rev-parse", "master"], capture_output=True, text=True, check=True
    ).stdout.strip()


def has_object(project, oid: str) -> bool:
    return (
        subprocess.run(["git", "--git-dir", project["bare"], "cat-file", "-e", oid], capture_output=True).returncode
        == 0
    )


def token_state(server, secret: str) -> PersonalToken:
    with server.store() as session:
        rows = session.scalars(select(PersonalToken).where(PersonalToken.hint == token_format.hint(secret, "tks_")))
        row = list(rows)[-1]
        session.expunge(row)
    return row


def events(server, username: str, action: str) -> list[AuditEvent]:
    with server.store() as session:
        user = server.user(username)
        found = list(
            session.scalars(select(AuditEvent).where(AuditEvent.user_id == user.id, AuditEvent.action == action))
        )
        session.expunge_all()
    return found


@pytest.mark.parametrize("where", ["tip commit, nested path", "older commit"])
def test_a_push_carrying_a_live_token_is_refused_and_no_ref_moves(server, project, tmp_path, where):
    alice = pusher(server, tmp_path, project["alice"])
    leaked = server.create_token(project["alice"], f"ci {where} {uuid.uuid4().hex[:6]}")
    work = clone(alice, project, tmp_path / "work")
    before = server_head(project)
    commit(alice, work, {"notes.txt": "more\n"}, "notes")
    path = "deploy/ci/stages/settings.env" if where.startswith("tip") else "settings.env"
    carrying = commit(alice, work, {path: f"URL=https://example.test\nTOKEN={leaked}\n"}, "add settings")
    if where == "older commit":  # added, then removed: still in the history being pushed
        commit(alice, work, {path: None}, "remove settings")
    refused = alice.git("push", "origin", "HEAD:master", cwd=work, check=False)
    assert refused.returncode != 0
    err = refused.stderr
    assert "remote: Push refused: it contains a live Tokensmith personal access token" in err, err
    assert f"remote:   commit {carrying[:12]}  {path}  token {token_format.hint(leaked, 'tks_')} (your token" in err
    assert "remote: 1. Replace it wherever it was used: create a new token on My Tokens" in err
    assert "git rebase -i" in err and "remote: 3. Push again." in err
    assert "pre-receive hook declined" in err
    assert leaked not in err and leaked[4:36] not in err
    assert server_head(project) == before, "no ref moved"
    assert not has_object(project, carrying), "the refused objects were dropped with the quarantine"
    row = token_state(server, leaked)
    assert row.revoked_reason == "push_protection"
    blocked = [e for e in events(server, project["alice"], "token.push_blocked") if e.details["token_id"] == row.id]
    assert blocked and blocked[0].details["commit"] == carrying and blocked[0].details["path"] == path
    assert blocked[0].details["repository"] == project["id"]


def test_someone_elses_token_blocks_too_and_its_owner_is_told(server, project, tmp_path):
    bob = pusher(server, tmp_path, project["bob"])
    leaked = server.create_token(project["alice"], f"alice's {uuid.uuid4().hex[:6]}")
    work = clone(bob, project, tmp_path / "work")
    before = server_head(project)
    commit(bob, work, {"found.txt": f"alice left this: {leaked}\n"})
    refused = bob.git("push", "origin", "HEAD:master", cwd=work, check=False)
    assert refused.returncode != 0 and "(someone else's token; its owner is told)" in refused.stderr
    assert server_head(project) == before
    row = token_state(server, leaked)
    assert row.revoked_reason == "push_protection"
    revoked = [e for e in events(server, project["alice"], "token.revoked") if e.details["token_id"] == row.id]
    assert revoked[0].actor == project["bob"] and revoked[0].details["reason"] == "push_protection"
    assert "revoked by push protection (found in a git push)" in trail.describe(revoked[0])
    blocked = [e for e in events(server, project["alice"], "token.push_blocked") if e.details["token_id"] == row.id]
    words = trail.describe(blocked[0])
    assert f"was found in a git push by {project['bob']} to project {project['id']} (commit " in words
    assert "found.txt); the push was refused and the token revoked" in words and trail.needs_attention(blocked[0])


def test_a_token_in_a_commit_message_blocks_too(server, project, tmp_path):
    alice = pusher(server, tmp_path, project["alice"])
    leaked = server.create_token(project["alice"], f"message {uuid.uuid4().hex[:6]}")
    work = clone(alice, project, tmp_path / "work")
    before = server_head(project)
    carrying = commit(alice, work, {"ok.txt": "nothing here\n"}, f"deploy with {leaked}")
    refused = alice.git("push", "origin", "HEAD:master", cwd=work, check=False)
    assert (
        f"remote:   commit {carrying[:12]}  (commit message)  token {token_format.hint(leaked, 'tks_')}"
        in refused.stderr
    )
    assert server_head(project) == before


def test_revoked_tokens_and_look_alikes_do_not_block(server, project, tmp_path):
    alice = pusher(server, tmp_path, project["alice"])
    dead_name = f"dead {uuid.uuid4().hex[:6]}"
    dead = server.create_token(project["alice"], dead_name)
    with server.client(auth=(alice.username, alice.token)) as client:
        assert client.delete(f"/api/v1/tokens/{server.token_row(alice.username, dead_name).id}").status_code == 204
    live = server.create_token(project["alice"], f"look-alike {uuid.uuid4().hex[:6]}")
    look_alike = remember(live[:-1] + ("A" if live[-1] != "A" else "B"))  # a wrong checksum
    work = clone(alice, project, tmp_path / "work")
    pushed = commit(alice, work, {"docs/example.md": f"old: {dead}\nexample: {look_alike}\nfake: tks_{'x' * 38}\n"})
    alice.git("push", "origin", "HEAD:master", cwd=work)
    assert server_head(project) == pushed
    assert token_state(server, live).revoked_at is None


def test_objects_already_in_the_repository_are_not_scanned_again(server, project, tmp_path):
    """History brought in around the server (an administrator's import) is not rescanned when a
    push reuses it: only what a push adds is read."""
    alice = pusher(server, tmp_path, project["alice"])
    live = server.create_token(project["alice"], f"imported {uuid.uuid4().hex[:6]}")
    work = clone(alice, project, tmp_path / "work")
    imported = commit(alice, work, {"legacy/config.ini": f"token = {live}\n"}, "imported history")
    alice.git("push", project["bare"], "HEAD:refs/heads/imported", cwd=work)  # straight to disk, no server
    # The same blob at a new path: a new tree and commit, but the blob is in the repository already.
    (work / "config.ini").write_text(f"token = {live}\n")
    pushed = commit(alice, work, {"config.ini": f"token = {live}\n"}, "copy")
    alice.git("push", "origin", "HEAD:master", cwd=work)
    assert server_head(project) == pushed and imported != pushed
    assert token_state(server, live).revoked_at is None
