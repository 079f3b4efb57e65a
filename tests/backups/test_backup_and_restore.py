"""A backup taken while people work, restored on a fresh data dir and store, on SQLite and on
PostgreSQL: real git pushing, real HTTP releasing, tokens made and revoked all along, a live
server; then, on the restored deployment, a real `git clone` and `git fsck --full`, a real `mvn`
resolving the releases through their metadata, every token live at the backup's moment working,
every token revoked at any time refused (the revocation journal), the admin's password working
and the backup's browser sessions ended."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.conftest import new_postgres_database
from tests.support.git import GitUser
from tests.support.ledger import remember, watch
from tests.support.maven import dependency_get, write_settings
from tests.support.pages import sign_in
from tests.support.postgres import PostgresServer
from tests.support.servers import LiveServer
from tokensmith.store.models import Release

PROJECT, GROUP_ID = "acme", "com.acme.backup"
PASSPHRASE = remember("the passphrase of the live backup test")


@dataclass
class Token:
    owner: str
    name: str
    secret: str
    id: int
    making: float  # when making it was asked for (monotonic)
    made: float  # when making it returned
    revoking: float | None = None  # when its revocation was asked for


@dataclass
class Work:
    """What people did, and when each act was done (monotonic): the test's record of the truth."""

    tokens: list[Token] = field(default_factory=list)
    pushes: list[tuple[str, float]] = field(default_factory=list)  # (commit, pushed)
    releases: list[tuple[str, float]] = field(default_factory=list)  # (version, released)
    failures: list[str] = field(default_factory=list)
    rounds: dict[str, int] = field(default_factory=dict)


class People:
    """Alice pushes and releases, Bob makes and revokes tokens, each in a thread, until stopped."""

    def __init__(self, server: LiveServer, alice: GitUser, work_tree: Path, bob_manager: str) -> None:
        self.server, self.alice, self.work_tree, self.bob_manager = server, alice, work_tree, bob_manager
        self.work = Work()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._loop, args=(name, act), daemon=True)
            for name, act in (("push", self.push), ("release", self.release), ("tokens", self.tokens))
        ]

    def _loop(self, name: str, act: Callable[[int], None]) -> None:
        number = 0
        while not self._stop.is_set():
            try:
                act(number)
            except (AssertionError, OSError, httpx.HTTPError, subprocess.SubprocessError) as error:
                self.work.failures.append(f"{name} #{number}: {type(error).__name__}: {error}")
                return
            number += 1
            self.work.rounds[name] = number

    def push(self, number: int) -> None:
        (self.work_tree / f"work-{number}.bin").write_bytes(os.urandom(40_000))
        self.alice.git("add", ".", cwd=self.work_tree)
        self.alice.git("commit", "-q", "-m", f"work {number}", cwd=self.work_tree)
        self.alice.git("push", "-q", "origin", "HEAD:master", cwd=self.work_tree)
        commit = self.alice.git("rev-parse", "HEAD", cwd=self.work_tree).stdout.strip()
        self.work.pushes.append((commit, time.monotonic()))

    def release(self, _number: int) -> None:
        with self.server.client(auth=("alice", self.alice.token)) as client:
            answer = client.post(
                f"/studio/v2/project/{PROJECT}/releases", json={"revision": "master", "versionName": "PATCH"}
            )
        assert answer.status_code == 201, answer.text
        self.work.releases.append((answer.json()["version"], time.monotonic()))

    def tokens(self, number: int) -> None:
        self.work.tokens.append(make_token(self.server, "bob", f"busy {number}"))
        if number % 2 == 1:  # revoke one made earlier, as its owner does, over HTTP
            victim = next(
                token for token in self.work.tokens if token.revoking is None and token.name.startswith("busy")
            )
            revoke(self.server, victim, self.bob_manager)

    def __enter__(self) -> People:
        for thread in self._threads:
            thread.start()
        self.wait_for_rounds(1)
        return self

    def wait_for_rounds(self, rounds: int, timeout: float = 60) -> None:
        base = dict(self.work.rounds)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.work.failures:
            if all(
                self.work.rounds.get(name, 0) >= base.get(name, 0) + rounds for name in ("push", "release", "tokens")
            ):
                return
            time.sleep(0.05)
        raise AssertionError(f"people stopped working: {self.work.failures or self.work.rounds}")

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)


def make_token(server: LiveServer, owner: str, name: str) -> Token:
    making = time.monotonic()
    secret = server.create_token(owner, name)
    with server.client() as client:
        token_id = client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).json()["token"]["id"]
    return Token(owner, name, secret, token_id, making, time.monotonic())


def revoke(server: LiveServer, token: Token, with_secret: str) -> None:
    token.revoking = time.monotonic()
    with server.client() as client:
        answer = client.delete(f"/api/v1/tokens/{token.id}", headers={"Authorization": f"Bearer {with_secret}"})
    assert answer.status_code == 204, answer.text


def status_with(server: LiveServer, secret: str) -> int:
    with server.client() as client:
        return client.get("/api/v1/me", headers={"Authorization": f"Bearer {secret}"}).status_code


@dataclass
class Deployment:
    store: str
    base: Path
    server: LiveServer
    env: dict[str, str]
    alice: GitUser
    work_tree: Path
    kept: dict[str, Token]  # tokens made before the backup that nobody revokes
    stolen: Token  # live at the backup, revoked after it
    carol: Token  # live at the backup, its account disabled after it
    session_cookie: str  # a browser session of the backup's moment
    postgres: PostgresServer | None


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    base = tmp_path_factory.mktemp(f"backup-{request.param}")
    env = {"TOKENSMITH_REVOCATION_JOURNAL": str(base / "journal")}  # kept apart from the data dir, as advised
    postgres = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    if postgres is not None:
        # Here the journal stays where it is by default (DATA_DIR/revocations): the restore says so.
        env = {"TOKENSMITH_DATABASE_URL": new_postgres_database(postgres)}
    server = LiveServer(base / "data", env=env).start()
    try:
        for name in ("alice", "bob", "carol"):
            server.create_user(name)
        server.create_project(PROJECT, GROUP_ID, owner="alice")
        alice = GitUser(base / "alice", "alice", server.create_token("alice", "pusher"))
        alice.remember_credentials(server.base_url)
        work_tree = base / "alice" / "work"
        alice.git("clone", "-q", f"{server.base_url}/git/{PROJECT}.git", str(work_tree))
        alice.publish(work_tree, {"README.md": "# acme\n"}, "first page")
        kept = {name: make_token(server, "bob", name) for name in ("bob manager", "bob ci", "bob maven")}
        stolen = make_token(server, "bob", "laptop")
        carol = make_token(server, "carol", "carol ci")
        with server.client(follow_redirects=False) as browser:
            assert sign_in(browser, "admin", server.admin_password).status_code == 303
            cookie = remember(browser.cookies["tokensmith_session"])
        yield Deployment(request.param, base, server, env, alice, work_tree, kept, stolen, carol, cookie, postgres)
    finally:
        server.stop()


def test_a_backup_taken_while_people_work_comes_back_whole_and_no_revoked_token_lives_again(
    deployment: Deployment, tmp_path_factory: pytest.TempPathFactory, mvn: str
) -> None:
    server, base = deployment.server, deployment.base
    backup = watch(base / "backups" / "acme.tsbackup")
    backup.parent.mkdir(mode=0o700)
    encrypted = deployment.store == "postgresql"  # one of each
    (base / "passphrase").write_text(PASSPHRASE + "\n")
    sealed = ["--passphrase-file", str(base / "passphrase")] if encrypted else []

    with People(server, deployment.alice, deployment.work_tree, deployment.kept["bob manager"].secret) as people:
        started = time.monotonic()
        made = server.cli("backup", "create", str(backup), *sealed)
        finished = time.monotonic()
        people.wait_for_rounds(2)  # and they go on working after it
    work = people.work
    assert made.returncode == 0 and not work.failures, made.stderr + "\n".join(work.failures)
    assert made.stdout.startswith(f"Backup written to {backup}:") and made.stdout.count("\n") == 1, made.stdout
    assert ("encrypted" if encrypted else "not encrypted") in made.stdout
    assert backup.stat().st_mode & 0o777 == 0o600
    assert [path.name for path in backup.parent.iterdir()] == [backup.name]  # no partial file left behind
    # The stolen laptop, after the backup: its token revoked, and carol leaves.
    revoke(server, deployment.stolen, deployment.stolen.secret)
    assert server.cli("users", "disable", "carol").returncode == 0
    with server.store() as session:
        all_releases = set(session.scalars(select(Release.version)))

    restored, said = restore_elsewhere(deployment, backup, sealed, tmp_path_factory)
    try:
        assert "Restored the backup of" in said and "Browser sessions ended: 1" in said
        assert "Second factors are as they were then" in said and "tokensmith users reset-2fa USER" in said
        replayed = the_journal_replayed(deployment, restored, said)
        assert "token “laptop”" in replayed and "account carol" in replayed

        revoked = [token for token in work.tokens if token.revoking is not None]
        live_at_backup = [
            token
            for token in [*work.tokens, *deployment.kept.values()]
            if token.made < started and token.revoking is None
        ]
        made_after = [token for token in work.tokens if token.making > finished and token.revoking is None]
        assert revoked and live_at_backup and made_after
        for token in live_at_backup:
            assert status_with(restored, token.secret) == 200, token.name
        for token in [*revoked, deployment.stolen, deployment.carol]:
            assert status_with(restored, token.secret) == 401, token.name
        for token in made_after:
            assert status_with(restored, token.secret) == 401, token.name

        for journal in (deployment.base / "journal", deployment.server.data_dir / "revocations"):
            for file in journal.glob("*.jsonl"):
                watch(file)  # never a secret in it
        the_admin_signs_in_again(deployment, restored)
        the_repository_is_whole(deployment, restored, work, started, base)
        the_releases_resolve(deployment, restored, work, started, all_releases, mvn, base)
    finally:
        restored.stop()


def restore_elsewhere(
    deployment: Deployment, backup: Path, sealed: list[str], tmp_path_factory: pytest.TempPathFactory
) -> tuple[LiveServer, str]:
    """The backup restored on a fresh data dir (and a fresh database), the server started on it."""
    elsewhere = tmp_path_factory.mktemp(f"restored-{deployment.store}")
    env = dict(deployment.env)
    if deployment.postgres is not None:
        env["TOKENSMITH_DATABASE_URL"] = new_postgres_database(deployment.postgres)
    restored = LiveServer(elsewhere / "data", env=env, name="restored")
    result = restored.cli("backup", "restore", str(backup), *sealed)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Restored the backup of"), result.stdout
    assert (elsewhere / "data").stat().st_mode & 0o777 == 0o700
    assert (elsewhere / "data" / "secret-keys").stat().st_mode & 0o777 == 0o600
    if deployment.store == "sqlite":
        assert (elsewhere / "data" / "tokensmith.db").stat().st_mode & 0o777 == 0o600
    else:  # the database holds it now: a second restore into it is refused, an empty data dir or not
        again = restored.cli(
            "backup", "restore", str(backup), *sealed, env={"TOKENSMITH_DATA_DIR": str(elsewhere / "2")}
        )
        assert again.returncode == 4 and "is not empty" in again.stderr and "empty database" in again.stderr
        assert not (elsewhere / "2").exists()
    return restored.start(), result.stdout


def the_journal_replayed(deployment: Deployment, restored: LiveServer, said: str) -> str:
    """SQLite here keeps its journal apart (TOKENSMITH_REVOCATION_JOURNAL), which the restore
    found and replayed itself. PostgreSQL here keeps it in the old data dir, its default: the
    restore says the window is open and how to close it, the stolen token works until the one
    command is run, and not after."""
    if deployment.store == "sqlite":
        assert f"Replayed the revocation journal {deployment.base / 'journal'}" in said
        return said
    assert "WARNING: no revocation journal was replayed" in said and "tokensmith backup replay-revocations" in said
    assert status_with(restored, deployment.stolen.secret) == 200  # the window, as the restore said
    replay = restored.cli("backup", "replay-revocations", str(deployment.server.data_dir / "revocations"))
    assert replay.returncode == 0, replay.stderr
    assert status_with(restored, deployment.stolen.secret) == 401
    return replay.stdout


def the_admin_signs_in_again(deployment: Deployment, restored: LiveServer) -> None:
    with restored.client(follow_redirects=False) as browser:
        browser.cookies.set("tokensmith_session", deployment.session_cookie)
        assert browser.get("/tokens").status_code == 303  # the backup's session ended
    with restored.client(follow_redirects=False) as browser:
        assert sign_in(browser, "admin", deployment.server.admin_password).status_code == 303
        assert browser.get("/tokens").status_code == 200


def the_repository_is_whole(
    deployment: Deployment, restored: LiveServer, work: Work, started: float, base: Path
) -> None:
    clone = base / "clone"
    person = GitUser(base / "restorer", "alice", deployment.alice.token)
    person.remember_credentials(restored.base_url)
    person.git("clone", "-q", f"{restored.base_url}/git/{PROJECT}.git", str(clone))
    person.git("fsck", "--full", cwd=clone)
    bare = restored.data_dir / "git" / f"{PROJECT}.git"
    fsck = subprocess.run(["git", "--git-dir", str(bare), "fsck", "--full"], capture_output=True, text=True)
    assert fsck.returncode == 0 and "error" not in fsck.stderr, fsck.stderr
    pushed_before = [commit for commit, pushed in work.pushes if pushed < started]
    assert pushed_before
    for commit in pushed_before:
        person.git("merge-base", "--is-ancestor", commit, "origin/master", cwd=clone)
    assert (bare / "logs" / "refs" / "heads" / "master").read_text().count("\tpush") >= len(pushed_before)
    demo = restored.data_dir / "git" / "demo.git"  # the first start's, never pushed to: empty, and whole
    assert (demo / "HEAD").read_text() == "ref: refs/heads/master\n"
    assert subprocess.run(["git", "--git-dir", str(demo), "fsck", "--full"], capture_output=True).returncode == 0


def the_releases_resolve(
    deployment: Deployment,
    restored: LiveServer,
    work: Work,
    started: float,
    all_releases: set[str],
    mvn: str,
    base: Path,
) -> None:
    with restored.store() as session:
        versions = set(session.scalars(select(Release.version)))
    released_before = {version for version, released in work.releases if released < started}
    assert released_before <= versions <= all_releases
    studio = restored.data_dir / "maven" / "studio"
    for group in (GROUP_ID, "nuxeo-studio"):
        on_disk = {path.name for path in (studio / group.replace(".", "/") / PROJECT).iterdir() if path.is_dir()}
        assert on_disk == versions, group  # no release without its files, no files without their release
    settings = write_settings(base / "settings.xml", restored.base_url, "alice", deployment.alice.token)
    newest = max(versions, key=lambda version: tuple(int(part) for part in version.split(".")))
    # A version range: resolved through maven-metadata.xml, as the restore rewrote it.
    resolved = dependency_get(mvn, settings, base / "m2", f"{GROUP_ID}:{PROJECT}:[0.0.1,99.0.0)")
    assert resolved.returncode == 0, resolved.stdout[-2000:]
    jar = base / "m2" / GROUP_ID.replace(".", "/") / PROJECT / newest / f"{PROJECT}-{newest}.jar"
    assert jar.is_file()
    with restored.client(auth=("alice", deployment.alice.token)) as client:
        for version in sorted(released_before):
            path = f"/maven/studio/{GROUP_ID.replace('.', '/')}/{PROJECT}/{version}/{PROJECT}-{version}.jar"
            assert client.get(path).status_code == 200, version
