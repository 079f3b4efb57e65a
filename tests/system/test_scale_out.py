"""Several instances on one PostgreSQL and one data dir, behind Debian's nginx.

Started together on an empty store they all come up, and the first start happens once; a
revocation through one is refused by the others on the very next request; browser sessions,
their forms and the sign-in throttle hold whichever instance answers; releases through several
at once all land in maven-metadata.xml, under a lock in the store; an instance killed under
load costs at most 1% of requests, and a rolling restart none, a clone in flight included.
Real processes only: `tokensmith serve`, nginx, wrk, curl, git, mvn, Chromium.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from playwright.sync_api import expect
from sqlalchemy import create_engine, select

from tests.conftest import new_postgres_database, unavailable
from tests.support.cluster import Cluster, graceful_stop, kill, runs_git
from tests.support.git import GitUser
from tests.support.ledger import remember
from tests.support.maven import dependency_get, write_settings
from tests.support.nginx import NginxUnavailable
from tests.support.pages import sign_in
from tests.support.servers import LiveServer
from tokensmith.projects import maven_repository
from tokensmith.projects.maven_repository import Coordinates
from tokensmith.store.database import MIGRATIONS_DIR, session_factory, transaction_lock, unit_of_work
from tokensmith.store.models import Project, User
from tokensmith.tokens import format as token_format

# serial: three instances under wrk, whose figures the other worker's load would skew.
pytestmark = [pytest.mark.postgres, pytest.mark.serial]

PASSWORD = "a fleet operator's password"
FAILOVER_LUA = Path(__file__).resolve().parent.parent / "support" / "failover.lua"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def cluster(postgres, tmp_path_factory) -> Cluster:
    """Three instances behind nginx; /git/ is sent to clients at 2 MB/s, so that a clone of a
    few tens of MB stays in flight long enough to straddle a restart."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        unavailable("nginx is not installed (apt-get install nginx)")
    fleet = Cluster(tmp_path_factory.mktemp("cluster"), new_postgres_database(postgres), git_rate="2m")
    try:
        fleet.start()
    except NginxUnavailable as error:
        unavailable(str(error))
    yield fleet
    fleet.stop()


def curl(url: str, *, token: str | None = None, method: str = "GET", data: str | None = None) -> tuple[int, str]:
    """curl, with the token in a config read from stdin (never on a command line)."""
    config = f'header = "Authorization: Bearer {token}"\n' if token else ""
    command = ["curl", "-sS", "-K", "-", "-o", "-", "-w", "\n%{http_code}", "-X", method, url]
    if data is not None:
        command += ["-H", "Content-Type: application/json", "--data-binary", data]
    done = subprocess.run(command, input=config, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition("\n")
    return int(status), body


def addresses(cluster: Cluster) -> set[str]:
    return {f"127.0.0.1:{instance.port}" for instance in cluster.instances}


# --- coming up together -----------------------------------------------------------------------------


def test_instances_started_together_on_an_empty_store_all_come_up_and_bootstrap_once(postgres, tmp_path):
    url = new_postgres_database(postgres)
    shared = tmp_path / "shared-data"
    instances = [LiveServer(shared, env={"TOKENSMITH_DATABASE_URL": url}, name=f"together{n}") for n in range(4)]
    try:
        for instance in instances:
            instance.launch()
        for instance in instances:
            instance.wait_until_ready(90)
        assert [instance.process.poll() for instance in instances] == [None] * 4
        assert len([instance for instance in instances if instance.admin_password]) == 1
        engine = create_engine(url)
        try:
            with unit_of_work(session_factory(engine)) as session:
                assert session.scalars(select(User.username)).all() == ["admin"]
                assert session.scalars(select(Project.id)).all() == ["demo"]
                current = MigrationContext.configure(session.connection()).get_current_revision()
        finally:
            engine.dispose()
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        assert current == ScriptDirectory.from_config(config).get_current_head()
        # One key for all: the admin's password opens a session on every instance, and a token
        # made on the shared store (its digest under that key) opens the demo repository anywhere.
        password = next(instance.admin_password for instance in instances if instance.admin_password)
        for instance in instances:
            with instance.client() as client:
                assert sign_in(client, "admin", password).status_code == 303
        token = instances[0].create_token("admin", "everywhere")
        git = GitUser(tmp_path / "admin", "admin", token)
        for number, instance in enumerate(instances):
            git.remember_credentials(instance.base_url)
            git.git("clone", f"{instance.base_url}/git/demo.git", f"demo{number}")
    finally:
        for instance in instances:
            instance.stop()


# --- one store, every instance ------------------------------------------------------------------------


def test_a_revocation_through_one_instance_is_refused_by_every_other_at_the_next_request(cluster):
    user = unique("revoker")
    cluster.instances[0].create_user(user)
    for number, revoker in enumerate(cluster.instances):
        token = cluster.instances[0].create_token(user, f"round {number}")
        for instance in cluster.instances:
            assert curl(f"{instance.base_url}/api/v1/me", token=token)[0] == 200
        me = httpx.get(f"{cluster.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert curl(f"{revoker.base_url}/api/v1/tokens/{me['token']['id']}", token=token, method="DELETE")[0] == 204
        for other in [instance.base_url for instance in cluster.instances if instance is not revoker] + [cluster.url]:
            status, body = curl(f"{other}/api/v1/me", token=token)
            assert status == 401 and '"token_revoked"' in body, (other, body)


def test_sessions_and_forms_hold_whichever_instance_answers(cluster, chromium):
    user = unique("browser")
    cluster.instances[1].create_user(user, password=PASSWORD)
    seen_before = len(cluster.nginx.requests())
    context = chromium.new_context(base_url=cluster.url)
    try:
        page = context.new_page()
        page.goto("/login")
        page.get_by_label("Username").fill(user)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="My Tokens", level=1)).to_be_visible()
        for name in ("fleet one", "fleet two"):
            page.get_by_label("Token name").fill(name)
            page.get_by_role("button", name="Create token").click()
            token = remember(page.get_by_test_id("new-token").inner_text().strip())
            assert curl(f"{cluster.url}/api/v1/me", token=token)[0] == 200
        page.get_by_role("link", name="My Applications").click()
        page.get_by_role("link", name="My Tokens").click()
        expect(page.get_by_role("cell", name="fleet two", exact=True)).to_be_visible()
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    finally:
        context.close()
    pages = [
        r
        for r in cluster.nginx.requests()[seen_before:]  # the browser's, but for its favicon
        if not r.path.startswith(("/static/", "/api/", "/favicon.ico"))
    ]
    assert all(r.status < 400 for r in pages), [(r.method, r.path, r.status) for r in pages]
    posts = [r for r in pages if r.method == "POST"]
    assert [r.path for r in posts] == ["/login", "/tokens", "/tokens", "/logout"]
    assert {r.upstreams[-1] for r in pages} == addresses(cluster)  # every instance had its turn
    assert len({r.upstreams[-1] for r in posts}) >= 2  # forms posted to another than served them


def test_password_guessing_spread_over_the_instances_is_counted_once(cluster):
    user = unique("guessed")
    cluster.instances[0].create_user(user, password=PASSWORD)
    seen_before = len(cluster.nginx.requests())
    with httpx.Client(base_url=cluster.url, timeout=30) as client:
        for attempt in range(10):
            assert sign_in(client, user, f"guess number {attempt}").status_code == 401
        refused = sign_in(client, user, PASSWORD)  # even the right one, for now, on any instance
    assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
    guesses = [r for r in cluster.nginx.requests()[seen_before:] if r.method == "POST" and r.path == "/login"]
    assert {r.upstreams[-1] for r in guesses} == addresses(cluster)


# --- releases: one lock in the store -------------------------------------------------------------------


@pytest.fixture(scope="module")
def release_project(cluster, tmp_path_factory) -> dict:
    user, project = unique("releaser"), unique("fleet-project")
    cluster.instances[0].create_user(user)
    assert (
        cluster.instances[0]
        .cli("projects", "create", project, "--group-id", "com.example.fleet", "--owner", user)
        .returncode
        == 0
    )
    token = cluster.instances[0].create_token(user, "releases")
    git = GitUser(tmp_path_factory.mktemp("releaser"), user, token)
    git.remember_credentials(cluster.url)
    work = git.home / "work"
    git.git("clone", f"{cluster.url}/git/{project}.git", str(work))
    (work / "README.md").write_text("# Fleet\n")
    git.git("add", ".", cwd=work)
    git.git("commit", "-m", "first", cwd=work)
    git.git("push", "origin", "HEAD:master", cwd=work)
    return {"user": user, "project": project, "token": token}


def release(base_url: str, project: dict, version: str) -> int:
    return curl(
        f"{base_url}/studio/v2/project/{project['project']}/releases",
        token=project["token"],
        method="POST",
        data=f'{{"revision": "master", "versionName": "{version}"}}',
    )[0]


def test_releases_through_every_instance_at_once_all_land_in_maven_metadata(cluster, release_project, tmp_path, mvn):
    versions = [f"1.0.{n}" for n in range(9)]
    with ThreadPoolExecutor(max_workers=9) as pool:
        statuses = list(
            pool.map(lambda n: release(cluster.instances[n % 3].base_url, release_project, versions[n]), range(9))
        )
    assert statuses == [201] * 9
    base = f"{cluster.url}/maven/studio/com/example/fleet/{release_project['project']}/maven-metadata.xml"
    status, metadata = curl(base, token=release_project["token"])
    assert status == 200
    assert re.findall(r"<version>([^<]+)</version>", metadata) == versions
    assert "<latest>1.0.8</latest>" in metadata and "<release>1.0.8</release>" in metadata
    assert curl(base + ".sha1", token=release_project["token"])[1] == hashlib.sha1(metadata.encode()).hexdigest()
    settings = write_settings(
        tmp_path / "settings.xml", cluster.url, release_project["user"], release_project["token"], "fleet"
    )
    resolved = dependency_get(
        mvn, settings, tmp_path / "m2", f"com.example.fleet:{release_project['project']}:[1.0,2.0)"
    )
    assert resolved.returncode == 0, resolved.stdout[-3000:]
    assert (tmp_path / "m2" / "com" / "example" / "fleet" / release_project["project"] / "1.0.8").is_dir()


def test_a_release_waits_for_the_lock_in_the_store_not_on_a_file(cluster, release_project):
    """Another host publishing the same artifact holds the lock in PostgreSQL (this test, in a
    transaction of its own): a release through nginx waits until that transaction ends."""
    settings_env = cluster.instances[0].env
    coordinates = Coordinates("com.example.fleet", release_project["project"], "2.0.0")
    engine = create_engine(settings_env["TOKENSMITH_DATABASE_URL"])
    outcome: list[int] = []
    try:
        with unit_of_work(session_factory(engine)) as session:
            transaction_lock(
                session, maven_repository.publishing_lock(maven_repository.studio_root(cluster.data_dir), coordinates)
            )
            releasing = threading.Thread(target=lambda: outcome.append(release(cluster.url, release_project, "2.0.0")))
            releasing.start()
            releasing.join(3)
            assert releasing.is_alive() and outcome == []  # waiting for us
        releasing.join(30)
    finally:
        engine.dispose()
    assert outcome == [201]


# --- git through the proxy ------------------------------------------------------------------------------


def test_a_push_is_answered_only_once_its_whole_pack_is_in(cluster, release_project):
    """nginx streaming a push (proxy_request_buffering off) stops sending its body as soon as
    the answer's headers reach the client: an instance that answered early left pushes
    through the proxy hanging halfway, the backend waiting for the rest of the pack."""
    instance = cluster.instances[0]
    credentials = base64.b64encode(f"{release_project['user']}:{release_project['token']}".encode()).decode()
    command = b"0" * 40 + b" " + b"1" * 40 + b" refs/heads/half\0 report-status\n"
    start = (f"{len(command) + 4:04x}").encode() + command + b"0000" + b"PACK\0\0\0\2\0\0\0\1"
    with socket.create_connection(("127.0.0.1", instance.port), timeout=10) as connection:
        connection.sendall(
            f"POST /git/{release_project['project']}.git/git-receive-pack HTTP/1.1\r\n"
            f"Host: 127.0.0.1:{instance.port}\r\nAuthorization: Basic {credentials}\r\n"
            "Content-Type: application/x-git-receive-pack-request\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + f"{len(start):x}\r\n".encode()
            + start
            + b"\r\n"
        )
        connection.settimeout(2.0)  # the rest of the pack is "on its way": no answer yet
        with pytest.raises(TimeoutError):
            early = connection.recv(200)
            pytest.fail(f"answered before the pack was in: {early!r}")
    with httpx.Client(base_url=instance.base_url, auth=(release_project["user"], release_project["token"])) as client:
        refs = client.get(f"/git/{release_project['project']}.git/info/refs?service=git-upload-pack")
    assert refs.status_code == 200 and b"refs/heads/half" not in refs.content  # nothing moved


# --- instances coming and going under load -------------------------------------------------------------


def run_wrk(url: str, token: str, seconds: int, connections: int = 12) -> subprocess.Popen[str]:
    if shutil.which("wrk") is None:
        unavailable("wrk is not installed (apt-get install wrk)")
    unknown = remember(token_format.generate("tks_"))  # reported as leaked: known to nobody
    return subprocess.Popen(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "20s",
            "-s",
            str(FAILOVER_LUA),
            f"{url}/",
            "--",
            token,
            unknown,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wrk_outcome(load: subprocess.Popen[str], timeout: float) -> tuple[dict[int, int], int, str]:
    """Answers by status, and requests that got no answer at all (socket errors)."""
    output, _ = load.communicate(timeout=timeout)
    statuses = {
        int(status): int(count)
        for status, count in re.findall(r"(\d+)=(\d+)", re.search(r"failover-statuses:(.*)", output).group(1))
    }
    errors = sum(int(n) for n in re.findall(r"=(\d+)", re.search(r"failover-errors:(.*)", output).group(1)))
    return statuses, errors, output


def load_token(cluster: Cluster) -> str:
    user = unique("fleet-ci")
    cluster.instances[0].create_user(user)
    return cluster.instances[0].create_token(user, "load")


def test_an_instance_killed_under_load_costs_at_most_one_percent_of_requests(cluster):
    token = load_token(cluster)
    victim = cluster.instances[1]
    seen_before = len(cluster.nginx.requests())
    load = run_wrk(cluster.url, token, seconds=8)
    try:
        time.sleep(3)
        served_before_kill = {r.upstreams[-1] for r in cluster.nginx.requests()[seen_before:]}
        kill(victim)
        statuses, errors, output = wrk_outcome(load, timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
        victim.start()
    assert f"127.0.0.1:{victim.port}" in served_before_kill  # it was taking its share
    answered = sum(statuses.values())
    failed = errors + sum(count for status, count in statuses.items() if status not in (200, 202))
    assert answered > 300, output
    assert failed <= 0.01 * (answered + errors), output
    print(f"\nkill -9 under load: {failed} of {answered + errors} requests failed\n{output}")


def proxied_to_again(instance: LiveServer, timeout: float = 15) -> None:
    """Wait, as docs/deployment.md's rolling restart does, until the proxy sends the restarted
    instance requests again: nginx marks an instance down at a failed request and tries it again
    only after fail_timeout (2 s here). Stopping the next one sooner can leave nginx no instance it
    deems up (one stopping, one just back but still shunned, the last one stopping next): a 502
    to every request until fail_timeout passes."""
    deadline = time.monotonic() + timeout
    while '"GET /api/v1/me' not in instance.console_since_start():  # wrk's load, through nginx
        assert time.monotonic() < deadline, f"nginx sent nothing to the restarted {instance.base_url} in {timeout:g} s"
        time.sleep(0.05)


def test_a_rolling_restart_costs_no_request_not_even_a_clone_in_flight(cluster, tmp_path):
    user, project = unique("cloner"), unique("big-repository")
    first = cluster.instances[0]
    first.create_user(user)
    assert first.cli("projects", "create", project, "--group-id", "com.example.big", "--owner", user).returncode == 0
    token = first.create_token(user, "clone")
    pusher = GitUser(tmp_path / "pusher", user, token)
    pusher.remember_credentials(cluster.url)
    work = pusher.home / "work"
    pusher.git("clone", f"{cluster.url}/git/{project}.git", str(work))
    for number in range(24):  # 24 MB that do not compress: 12 s at the proxy's 2 MB/s
        (work / f"blob{number:02}.bin").write_bytes(os.urandom(1024 * 1024))
    pusher.git("add", ".", cwd=work)
    pusher.git("commit", "-m", "big", cwd=work)
    pusher.git("push", "origin", "HEAD:master", cwd=work)
    pushed = pusher.git("rev-parse", "HEAD", cwd=work).stdout.strip()

    cloner = GitUser(tmp_path / "cloner", user, token)
    cloner.remember_credentials(cluster.url)
    target = cloner.home / "clone"
    load = run_wrk(cluster.url, token, seconds=300, connections=8)
    clone = subprocess.Popen(
        ["git", "clone", f"{cluster.url}/git/{project}.git", str(target)],
        cwd=cloner.home,
        env=cloner.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    stops: dict[str, tuple[float, float]] = {}
    try:
        deadline = time.monotonic() + 30
        while not list((target / ".git" / "objects" / "pack").glob("tmp_pack_*")) and time.monotonic() < deadline:
            time.sleep(0.05)  # the pack is on its way
        # The instance sending it is stopped first, while most of the pack is still to go: the
        # last few megabytes fit in the sockets' buffers, so a drain measured near the end of
        # the transfer would prove nothing.
        for instance in sorted(cluster.instances, key=lambda instance: not runs_git(instance)):
            stops[f"127.0.0.1:{instance.port}"] = graceful_stop(instance)
            instance.start()
            proxied_to_again(instance)
        clone_output, _ = clone.communicate(timeout=180)
        load.send_signal(signal.SIGINT)  # wrk stops and reports
        statuses, errors, output = wrk_outcome(load, timeout=60)
    finally:
        for process in (clone, load):
            if process.poll() is None:
                process.kill()
        for instance in cluster.instances:
            if instance.process.poll() is not None:
                instance.start()
    assert clone.returncode == 0, clone_output
    fsck = cloner.git("fsck", "--full", "--strict", cwd=target, check=False)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    assert cloner.git("rev-parse", "HEAD", cwd=target).stdout.strip() == pushed
    assert (target / "blob23.bin").read_bytes() == (work / "blob23.bin").read_bytes()
    # The pack was sent by an instance told to stop while sending it, which went on until it
    # had sent it all (the last megabytes wait in socket buffers when it exits).
    pack = max(
        (r for r in cluster.nginx.requests() if r.path == f"/git/{project}.git/git-upload-pack"),
        key=lambda r: r.bytes_sent,
    )
    assert pack.status == 200 and pack.bytes_sent > 24 * 1024 * 1024 and pack.upstreams == [pack.upstreams[-1]]
    asked, exited = stops[pack.upstreams[-1]]
    assert pack.started < asked < pack.ended and exited - asked > 2, (pack, asked, exited)
    answered = sum(statuses.values())
    assert answered > 300 and errors == 0 and set(statuses) <= {200, 202}, output
    print(
        f"\nrolling restart: {answered} requests, none failed; the clone took {pack.seconds:.1f} s, and its "
        f"instance went on {exited - asked:.1f} s after SIGTERM\n{output}"
    )
