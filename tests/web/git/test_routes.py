"""Real `git` over smart HTTP against a real server: clone, push, refusals, credential helpers."""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.support.git import GitUser
from tokensmith.tokens import format as token_format

PASSWORD = "git person's password"


@pytest.fixture(scope="module")
def project(server) -> dict[str, str]:
    """acme-…: alice owns it (write), bob reads it, carol is not a member."""
    suffix = uuid.uuid4().hex[:6]
    names = {role: f"{role}-{suffix}" for role in ("alice", "bob", "carol")}
    for name in names.values():
        server.create_user(name, password=PASSWORD)
    project_id = f"acme-contracts-{suffix}"
    server.create_project(project_id, "com.acme.studio", owner=names["alice"], members={names["bob"]: "read"})
    return {"id": project_id, "url": f"{server.base_url}/git/{project_id}.git", **names}


def person(server, tmp_path: Path, username: str) -> GitUser:
    """The user, with a fresh token remembered by git's `store` credential helper."""
    token = server.create_token(username, f"git {uuid.uuid4().hex[:8]}")
    user = GitUser(tmp_path / username, username, token)
    user.remember_credentials(server.base_url)
    return user


def commit_and_push(user: GitUser, url: str, work: Path, filename: str = "README.md") -> str:
    if not work.exists():
        user.git("clone", url, str(work))
    (work / filename).write_text(f"{filename} by {user.username}\n")
    user.git("add", filename, cwd=work)
    user.git("commit", "-m", f"add {filename}", cwd=work)
    user.git("push", "origin", "HEAD:master", cwd=work)
    return user.git("rev-parse", "HEAD", cwd=work).stdout.strip()


def test_owner_clones_commits_and_pushes_with_a_token_as_password(server, project, tmp_path):
    alice = person(server, tmp_path, project["alice"])
    pushed = commit_and_push(alice, project["url"], tmp_path / "work")
    again = alice.git("clone", project["url"], str(tmp_path / "again"))
    assert again.returncode == 0
    assert alice.git("rev-parse", "HEAD", cwd=tmp_path / "again").stdout.strip() == pushed
    assert alice.token not in (tmp_path / "work" / ".git" / "config").read_text()


def test_a_reader_clones_but_a_push_is_refused_with_words(server, project, tmp_path):
    alice = person(server, tmp_path, project["alice"])
    commit_and_push(alice, project["url"], tmp_path / "alice-work", "by-alice.txt")
    bob = person(server, tmp_path, project["bob"])
    bob.git("clone", project["url"], str(tmp_path / "bob-work"))
    assert (tmp_path / "bob-work" / "by-alice.txt").exists()
    (tmp_path / "bob-work" / "by-bob.txt").write_text("nope\n")
    bob.git("add", ".", cwd=tmp_path / "bob-work")
    bob.git("commit", "-m", "bob tries", cwd=tmp_path / "bob-work")
    refused = bob.git("push", "origin", "HEAD:master", cwd=tmp_path / "bob-work", check=False)
    assert refused.returncode != 0
    assert f"remote: You have read access to {project['id']}; this needs write access" in refused.stderr


@pytest.mark.parametrize("case", ["revoked", "unknown token", "mistyped token", "password", "no credentials"])
def test_bad_credentials_fail_fast_with_a_message(server, project, tmp_path, case):
    alice = GitUser(tmp_path / "alice", project["alice"], server.create_token(project["alice"], f"bad {case}"))
    expected = {
        "revoked": "This token was revoked",
        "unknown token": "Unknown or mistyped token",
        "mistyped token": "checksum does not match",
        "password": "Passwords are not accepted here",
        "no credentials": "could not read Username",
    }[case]
    if case == "revoked":
        row = server.token_row(project["alice"], f"bad {case}")
        with server.client(auth=(project["alice"], alice.token)) as client:
            assert client.delete(f"/api/v1/tokens/{row.id}").status_code == 204
        alice.remember_credentials(server.base_url)
    elif case == "unknown token":
        alice.remember_credentials(server.base_url, token_format.generate("tks_"))
    elif case == "mistyped token":
        alice.remember_credentials(server.base_url, alice.token[:-4] + "AAAA")
    elif case == "password":
        alice.remember_credentials(server.base_url, PASSWORD)
    started = time.monotonic()
    failed = alice.git("clone", project["url"], str(tmp_path / "clone"), check=False)
    assert failed.returncode != 0 and expected in failed.stderr, failed.stderr
    assert time.monotonic() - started < 20, "git must fail, not hang"
    assert not (tmp_path / "clone").exists()


def test_a_project_one_cannot_see_reads_like_one_that_does_not_exist(server, project, tmp_path):
    carol = person(server, tmp_path, project["carol"])
    hidden = carol.git("clone", project["url"], str(tmp_path / "hidden"), check=False)
    missing = carol.git("clone", f"{server.base_url}/git/no-such-project.git", str(tmp_path / "missing"), check=False)
    assert hidden.returncode != 0 and missing.returncode != 0
    assert "or you are not a member of it" in hidden.stderr and "or you are not a member of it" in missing.stderr
    assert "not found" in hidden.stderr and "not found" in missing.stderr


def test_the_cache_credential_helper_works_too(server, project, tmp_path):
    alice = GitUser(tmp_path / "alice", project["alice"], server.create_token(project["alice"], "cached"))
    socket = tmp_path / "cache-socket"
    alice.git("config", "--global", "credential.helper", f"cache --socket={socket} --timeout=300")
    alice.git(
        "credential",
        "approve",
        input=(
            f"protocol=http\nhost={server.base_url.removeprefix('http://')}\nusername={alice.username}\n"
            f"password={alice.token}\n\n"
        ),
    )
    try:
        assert alice.git("clone", project["url"], str(tmp_path / "cached")).returncode == 0
    finally:
        alice.git("credential-cache", f"--socket={socket}", "exit", check=False)


@pytest.mark.parametrize(
    "path, method", [("HEAD", "GET"), ("objects/info/packs", "GET"), ("info/refs", "GET"), ("git-upload-pack", "GET")]
)
def test_only_the_smart_protocol_is_served(server, project, path, method):
    token = server.create_token(project["alice"], f"probe {path} {method}")
    with server.client(auth=(project["alice"], token)) as client:
        response = client.request(method, f"/git/{project['id']}.git/{path}")
    assert response.status_code in (404, 405)
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "raw",
    [
        "/git/..%2F..%2Fetc.git/info/refs",
        "/git/%2e%2e.git/info/refs",
        "/git/a%00b.git/info/refs",
        "/git/" + "a" * 300 + ".git/info/refs",
        "/git/UPPER.git/info/refs",
    ],
)
def test_hostile_project_paths_are_not_found(server, project, raw):
    token = server.create_token(project["alice"], f"hostile {uuid.uuid4().hex[:6]}")
    with server.client(auth=(project["alice"], token)) as client:
        response = client.get(httpx.URL(server.base_url + raw, params={"service": "git-upload-pack"}))
    assert response.status_code == 404
    assert "or you are not a member of it" in response.text or "Nothing here" in response.text


def test_an_interrupted_push_leaves_the_repository_as_it_was(server, project, tmp_path):
    alice = person(server, tmp_path, project["alice"])
    work = tmp_path / "work"
    before = commit_and_push(alice, project["url"], work, "small.txt")
    (work / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    alice.git("add", "big.bin", cwd=work)
    alice.git("commit", "-m", "big", cwd=work)
    after = alice.git("rev-parse", "HEAD", cwd=work).stdout.strip()
    # The push git would send (update command, then the pack), cut off halfway through the pack.
    pack = subprocess.run(
        ["git", "pack-objects", "--stdout", "--revs"],
        input=f"{after}\n^{before}\n".encode(),
        cwd=work,
        env=alice.env(),
        capture_output=True,
        check=True,
    ).stdout
    command = f"{before} {after} refs/heads/master\0report-status\n".encode()

    def cut_off_body():
        yield f"{len(command) + 4:04x}".encode() + command + b"0000"
        yield pack[: len(pack) // 2]
        raise ConnectionAbortedError("the laptop lost its network")

    with server.client(auth=(alice.username, alice.token)) as client, pytest.raises(ConnectionAbortedError):
        client.post(
            f"/git/{project['id']}.git/git-receive-pack",
            content=cut_off_body(),
            headers={"Content-Type": "application/x-git-receive-pack-request"},
        )

    repository = server.data_dir / "git" / f"{project['id']}.git"
    deadline = time.monotonic() + 30
    while list((repository / "objects").glob("incoming-*")) and time.monotonic() < deadline:
        time.sleep(0.05)  # the backend is cleaning up what it had received
    inspector = GitUser(tmp_path / "inspector", "inspector", "")
    assert inspector.git("--git-dir", str(repository), "rev-parse", "master").stdout.strip() == before
    assert inspector.git("--git-dir", str(repository), "fsck", "--no-dangling").returncode == 0
    assert not list((repository / "objects").glob("incoming-*")), "half a push was left behind"
    # The same push, whole this time, goes through.
    alice.git("push", "origin", "HEAD:master", cwd=work)
    assert inspector.git("--git-dir", str(repository), "rev-parse", "master").stdout.strip() == after


def test_my_applications_shows_how_to_reach_each_project(server, project):
    from tests.support.pages import sign_in

    with server.client() as browser:
        assert sign_in(browser, project["bob"], PASSWORD).status_code == 303
        page = browser.get("/applications").text
    assert re.search(rf'<code data-testid="clone-url"[^>]*>{re.escape(project["url"])}</code>', page)
    assert f"com.acme.studio:{project['id']}" in page and f"{server.base_url}/maven/studio/" in page
    assert "(read access)" in page
    assert f"&lt;username&gt;{project['bob']}&lt;/username&gt;" in page
    assert "PASTE-A-PERSONAL-ACCESS-TOKEN-HERE" in page and "tks_" not in page.split("settings.xml")[1]


def test_project_administration_refuses_bad_input(server, project):
    cases = [
        (("projects", "create", "../etc", "--group-id", "com.acme", "--owner", project["alice"]), 2, "project id"),
        (("projects", "create", "ok-id", "--group-id", "com..acme", "--owner", project["alice"]), 2, "groupId"),
        (
            ("projects", "create", project["id"], "--group-id", "com.acme", "--owner", project["alice"]),
            4,
            "already exists",
        ),
        (("projects", "add-member", project["id"], project["carol"], "--role", "admin"), 2, "'read' or 'write'"),
        (("projects", "add-member", "no-such-project", project["carol"]), 3, "no project"),
    ]
    for args, code, words in cases:
        result = server.cli(*args)
        assert result.returncode == code and words in result.stderr, (args, result.stderr)


@pytest.mark.parametrize("version", ["0", "1", "2"])
def test_every_protocol_version_clones(server, project, tmp_path, version):
    alice = person(server, tmp_path, project["alice"])
    pushed = commit_and_push(alice, project["url"], tmp_path / "work", f"v{version}.txt")
    alice.git("-c", f"protocol.version={version}", "clone", project["url"], str(tmp_path / "clone"))
    assert alice.git("rev-parse", "HEAD", cwd=tmp_path / "clone").stdout.strip() == pushed


def test_a_gzipped_fetch_request_is_understood(server, project, tmp_path):
    import gzip

    alice = person(server, tmp_path, project["alice"])
    head = commit_and_push(alice, project["url"], tmp_path / "work", "gzip.txt")
    body = f"0032want {head}\n".encode() + b"0000" + b"0009done\n"
    with server.client(auth=(alice.username, alice.token)) as client:
        response = client.post(
            f"/git/{project['id']}.git/git-upload-pack",
            content=gzip.compress(body),
            headers={"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"},
        )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-git-upload-pack-result"
    assert response.content.startswith(b"0008NAK\n") and b"PACK" in response.content[:64]


def test_a_request_of_the_wrong_type_is_refused(server, project, tmp_path):
    alice = person(server, tmp_path, project["alice"])
    with server.client(auth=(alice.username, alice.token)) as client:
        response = client.post(
            f"/git/{project['id']}.git/git-upload-pack", content=b"0000", headers={"Content-Type": "text/plain"}
        )
    assert response.status_code == 422 and "application/x-git-upload-pack-request" in response.text


def test_a_corrupt_gzipped_request_fails_cleanly(server, project, tmp_path):
    alice = person(server, tmp_path, project["alice"])
    with server.client(auth=(alice.username, alice.token)) as client:
        response = client.post(
            f"/git/{project['id']}.git/git-upload-pack",
            content=b"\x1f\x8b\x08\x00garbage",
            headers={"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"},
        )
    assert response.status_code == 422 and "not valid gzip" in response.text  # before git even starts
    assert "Traceback" not in server.console()[-5000:]
