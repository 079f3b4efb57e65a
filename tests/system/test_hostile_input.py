"""Hostile input over real HTTP: a 4xx in words every time, never a 5xx, never a traceback.

JSON nested thousands deep and integers of thousands of digits in every JSON body, bodies past
their limit, gzip bombs to git, credentials checked before any body is read.
"""

from __future__ import annotations

import gzip
import socket
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.git import GitUser
from tests.support.servers import LiveServer

DEEP = "[" * 5000 + "]" * 5000
DEEP_OBJECT = '{"a":' * 5000 + "1" + "}" * 5000
HUGE = "9" * 5000
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def hostile(server: LiveServer) -> Iterator[dict[str, str]]:
    """A member of a project of its own, with a token; the server's log read at the end."""
    suffix = uuid.uuid4().hex[:6]
    owner, project = f"hostile-{suffix}", f"hostile-{suffix}"
    server.create_user(owner)
    assert server.cli("projects", "create", project, "--group-id", "com.acme.studio", "--owner", owner).returncode == 0
    offset = len(server.console())
    yield {"user": owner, "project": project, "token": server.create_token(owner, "hostile")}
    later = server.console()[offset:]
    assert "Traceback" not in later and "unexpected" not in later


def bodies(*fields: str) -> list[str]:
    """Hostile documents: whole, and in place of each field's value."""
    values = [DEEP, DEEP_OBJECT, HUGE, "-" + HUGE, "1e999999", '"\\ud800"']
    whole = [DEEP, DEEP_OBJECT, HUGE, "{", '{"a": 1,}', "\xff\xfe", "null"]
    return whole + [f'{{"{field}": {value}}}' for field in fields for value in values]


RELEASE = bodies("revision", "versionName")
INSTANCE = bodies("project", "description")
LEAK = [*bodies("tokens"), '{"tokens": [' + DEEP + "]}", '{"tokens": [' + HUGE + "]}"]


def post(server: LiveServer, path: str, body: str | bytes, **kwargs: object) -> httpx.Response:
    with server.client() as client:
        return client.post(
            path,
            content=body.encode(errors="surrogateescape") if isinstance(body, str) else body,
            headers=JSON,
            **kwargs,
        )


def assert_refused_in_words(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:300]
    body = response.json()
    assert set(body) == {"error", "message"} and len(body["message"]) < 400
    return body


@pytest.mark.parametrize("body", RELEASE)
def test_a_hostile_release_request_is_a_422(server, hostile, body):
    response = post(
        server, f"/studio/v2/project/{hostile['project']}/releases", body, auth=(hostile["user"], hostile["token"])
    )
    assert assert_refused_in_words(response, 422)["error"] == "invalid_input"


@pytest.mark.parametrize("body", INSTANCE)
def test_a_hostile_instance_registration_is_a_422(server, hostile, body):
    response = post(server, "/api/v1/instances", body, auth=(hostile["user"], hostile["token"]))
    assert assert_refused_in_words(response, 422)["error"] == "invalid_input"


@pytest.mark.parametrize("body", LEAK)
def test_a_hostile_leak_report_is_a_422(server, hostile, body):
    assert assert_refused_in_words(post(server, "/api/v1/tokens/revoke", body), 422)["error"] == "invalid_input"


@pytest.mark.parametrize("path", ["/studio/v2/project/{project}/releases", "/api/v1/instances"])
@pytest.mark.parametrize("body", [DEEP, HUGE, "garbage", "x" * 60_000])
def test_a_stranger_is_refused_401_before_the_body_is_read(server, hostile, path, body):
    response = post(server, path.format(project=hostile["project"]), body)
    assert assert_refused_in_words(response, 401)["error"] == "authentication_required"
    assert response.headers["www-authenticate"].startswith("Basic")


def test_a_stranger_is_refused_401_whatever_the_size_of_the_body(server, hostile):
    """The body is never read for a stranger, so its size does not matter either."""
    response = post(server, "/api/v1/instances", b"x" * 5_000_000)
    assert assert_refused_in_words(response, 401)["error"] == "authentication_required"


@pytest.mark.parametrize("size", [70_000, 50_000_000])
def test_a_leak_report_past_its_limit_is_a_413(server, size):
    body = b'{"tokens": ["tks_' + b"a" * size + b'"]}'
    answer = assert_refused_in_words(post(server, "/api/v1/tokens/revoke", body), 413)
    assert answer == {
        "error": "body_too_large",
        "message": "The request body is larger than POST /api/v1/tokens/revoke accepts (at most 64 KiB).",
    }


SCANNING = "/api/v1/secret-scanning/github"


@pytest.mark.parametrize("body", [*LEAK[:8], "x" * 400_000])
def test_an_unsigned_secret_scanning_report_is_a_401_whatever_it_holds(server, body):
    """The signature is the report's credential: without one, its body is never parsed."""
    answer = assert_refused_in_words(post(server, SCANNING, body), 401)
    assert answer["error"] == "invalid_signature" and "Nothing was revoked" in answer["message"]


@pytest.mark.parametrize("size", [600_000, 50_000_000])
def test_a_secret_scanning_report_past_its_own_limit_is_a_413(server, size):
    body = b'[{"token": "tks_' + b"a" * size + b'"}]'
    answer = assert_refused_in_words(post(server, SCANNING, body), 413)
    assert answer["message"] == f"The request body is larger than POST {SCANNING} accepts (at most 512 KiB)."


def test_a_body_sent_in_chunks_is_held_to_the_same_limit(server):
    def chunks() -> Iterator[bytes]:
        yield b'{"tokens": ["'
        for _ in range(100):
            yield b"a" * 10_000
        yield b'"]}'

    with server.client() as client:
        response = client.post("/api/v1/tokens/revoke", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert assert_refused_in_words(response, 413)["error"] == "body_too_large"


@pytest.mark.parametrize(
    ("length", "status"),
    [
        (b"3000000000", b"413 Request Entity Too Large"),  # refused before a byte of it is read
        (b"99999999999999999999", b"400 Bad Request"),  # uvicorn's parser refuses it first
    ],
)
def test_a_content_length_no_server_would_take_is_refused_at_once(server, length, status):
    answer = raw_request(
        server,
        b"POST /api/v1/tokens/revoke HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        b"Content-Type: application/json\r\nContent-Length: " + length + b"\r\n\r\n{}",
    )
    assert answer.split(b"\r\n", 1)[0] == b"HTTP/1.1 " + status


def raw_request(server: LiveServer, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as connection:
        connection.sendall(request)
        return connection.recv(65536)


def test_a_page_form_from_a_stranger_goes_to_sign_in_whatever_it_holds(server):
    with server.client() as client:
        response = client.post("/tokens", data={"name": "x" * 50_000, "csrf_token": "y" * 10_000})
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


# --- git: what a request may inflate to ------------------------------------------------------------


def upload_pack(server: LiveServer, hostile: dict[str, str], body: bytes, encoding: str = "gzip") -> httpx.Response:
    with server.client() as client:
        return client.post(
            f"/git/{hostile['project']}.git/git-upload-pack",
            content=body,
            headers={"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": encoding},
            auth=(hostile["user"], hostile["token"]),
        )


def test_a_gzip_bomb_to_git_stops_at_the_limit(server, hostile):
    bomb = gzip.compress(b"0" * (64 * 2**20), compresslevel=9)  # 64 MiB in about 64 KiB
    assert len(bomb) < 100_000
    response = upload_pack(server, hostile, bomb)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "A git request may carry at most 32 MiB once inflated.\n"


def test_a_git_request_that_is_not_gzip_says_so(server, hostile):
    response = upload_pack(server, hostile, b"not gzip at all")
    assert response.status_code == 422 and response.text == "The request body is not valid gzip.\n"


def test_a_stranger_gets_the_challenge_before_git_reads_anything(server, hostile):
    with server.client() as client:
        response = client.post(
            f"/git/{hostile['project']}.git/git-upload-pack",
            content=gzip.compress(b"0" * 2**20),
            headers={"Content-Type": "application/x-git-upload-pack-request", "Content-Encoding": "gzip"},
        )
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Basic")


def many_tagged_commits(count: int) -> bytes:
    """A git fast-import stream: ``count`` commits on master, each tagged."""
    stream = []
    for number in range(1, count + 1):
        content = f"{number}\n".encode()
        stream += [
            b"commit refs/heads/master",
            b"mark :%d" % number,
            b"committer T <t@example.test> 0 +0000",
            b"data 4",
            b"step",
            *([b"from :%d" % (number - 1)] if number > 1 else []),
            b"M 644 inline n.txt",
            b"data %d" % len(content),
            content,
            b"reset refs/tags/v0.0.%d" % number,
            b"from :%d" % number,
            b"",
        ]
    return b"\n".join(stream) + b"\n"


def test_git_itself_gzips_a_fetch_of_many_refs_and_it_is_served(server, hostile, tmp_path):
    """Real git compresses a fetch request past 1 KiB (here 300 wants): it must inflate."""
    git = GitUser(tmp_path / "home", hostile["user"], hostile["token"])
    git.remember_credentials(server.base_url)
    url = f"{server.base_url}/git/{hostile['project']}.git"
    work = tmp_path / "work"
    git.git("init", "-q", str(work))
    imported = subprocess.run(
        ["git", "fast-import", "--quiet"],
        input=many_tagged_commits(300),
        cwd=work,
        env=git.env(),
        capture_output=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    git.git("push", "-q", url, "master", "--tags", cwd=work)
    traced = subprocess.run(
        ["git", "clone", "-q", url, str(tmp_path / "again")],
        env={**git.env(), "GIT_TRACE_CURL": "1", "GIT_TRACE_CURL_NO_DATA": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert traced.returncode == 0, traced.stderr[-2000:]
    assert "Content-Encoding: gzip" in traced.stderr
    assert len(git.git("tag", cwd=tmp_path / "again").stdout.split()) == 300
