"""The routes served before FastAPI's dispatch (web/edge.py) answer exactly as FastAPI does.

One server (uvicorn as ``tokensmith serve`` runs it, in a thread of the test) listens on two
loopback ports: what arrives on one goes through the edge, as in production; what arrives on
the other goes straight to the FastAPI application behind it, where the same routes are
registered. The same requests on both get the same status, headers, body, the same change to
every Prometheus series, and the same log lines.
"""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.support.seeding import never_used_tokens
from tokensmith.cli.serve import prepare_store, uvicorn_options
from tokensmith.config import load_settings
from tokensmith.web.access_log import ACCESS_LOG, access_line
from tokensmith.web.app import create_app
from tokensmith.web.edge import Edge, without_sniffing

# What differs from one response to the next whatever served it: the date, the time the token
# was last used (and so, at times, the body's length), the client's port in the access log.
VARYING = {"date", "content-length"}
CLIENT_PORT = re.compile(r"127\.0\.0\.1:\d+")


class Recorded(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")


class TwoDoors:
    """The edge on one port, FastAPI alone on the other, one application behind both."""

    def __init__(self, data_dir: Path) -> None:
        settings = load_settings({"TOKENSMITH_DATA_DIR": str(data_dir), "TOKENSMITH_PUBLIC_URL": "http://127.0.0.1"})
        self.admin_password = prepare_store(settings).password
        (self.token,) = never_used_tokens(settings, "admin", 1)
        self.edge = create_app(settings)
        assert isinstance(self.edge, Edge)
        self.sockets = [socket.create_server(("127.0.0.1", 0)) for _ in range(2)]
        self.edge_url, self.framework_url = (f"http://127.0.0.1:{s.getsockname()[1]}" for s in self.sockets)
        edge_port = self.sockets[0].getsockname()[1]

        async def by_port(scope, receive, send):
            if scope["type"] == "lifespan" or scope["server"][1] == edge_port:
                await self.edge(scope, receive, send)
            else:  # every answer leaves with nosniff, added by the edge whichever way it came
                await self.edge.inner(scope, receive, without_sniffing(send))

        options = {
            k: v
            for k, v in uvicorn_options("127.0.0.1", 0, access_log=True).items()
            if k not in ("host", "port", "log_config")
        }
        self.server = uvicorn.Server(uvicorn.Config(by_port, log_config=None, **options))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": self.sockets}, daemon=True)

    def __enter__(self) -> TwoDoors:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(20)
        for listening in self.sockets:
            listening.close()


@pytest.fixture(scope="module")
def doors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoDoors]:
    with TwoDoors(tmp_path_factory.mktemp("edge") / "data") as both:
        yield both


def series(client: httpx.Client, url: str) -> dict[str, float]:
    """Every Prometheus sample of Tokensmith's own (not the process's), by name and labels."""
    text = client.get(url + "/metrics").text
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("tokensmith_")
    }


def answered(client: httpx.Client, base: str, metrics_url: str, request: dict, log: Recorded):
    before = series(client, metrics_url)
    log.lines.clear()
    response = client.request("GET", base + request["path"], headers=request.get("headers", {}))
    after = series(client, metrics_url)
    lines = [CLIENT_PORT.sub("127.0.0.1:PORT", line) for line in log.lines if "/metrics" not in line]
    changed = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
    headers = sorted((k, v) for k, v in response.headers.multi_items() if k not in VARYING)
    assert response.headers["content-length"] == str(len(response.content))
    body = json.loads(response.content)
    if isinstance(body.get("token"), dict):
        assert body["token"].pop("last_used_at")
    return response.status_code, headers, body, changed, lines


def cases(doors: TwoDoors) -> dict[str, dict]:
    return {
        "token as Bearer": {"path": "/api/v1/me", "headers": {"Authorization": f"Bearer {doors.token}"}},
        "token as Basic password": {"path": "/api/v1/me", "auth": ("admin", doors.token)},
        "no credentials": {"path": "/api/v1/me"},
        "an unknown token": {"path": "/api/v1/me", "headers": {"Authorization": "Bearer tks_" + "A" * 40}},
        "a malformed header": {"path": "/api/v1/me", "headers": {"Authorization": "Basic !!!not base64"}},
        "an oversized header": {
            "path": "/api/v1/me",
            "headers": {"Authorization": "Bearer " + "x" * 20000},
            "counted": False,
        },
        "a password where tokens are required": {"path": "/api/v1/me", "auth": ("admin", doors.admin_password)},
        "a query string": {"path": "/api/v1/me?x=1", "headers": {"Authorization": f"Bearer {doors.token}"}},
    }


def test_the_edge_answers_as_fastapi_does_headers_body_metrics_and_logs(doors, monkeypatch):
    log = Recorded()
    watched = [logging.getLogger(name) for name in ("tokensmith", "uvicorn.error")]
    # The access log's lines, as they are noted (web/access_log.py writes them behind the requests).
    monkeypatch.setattr(
        ACCESS_LOG, "info", lambda _message, *fields: log.lines.append(access_line(*fields).rstrip("\n"))
    )
    for logger in watched:
        logger.addHandler(log)
        logger.setLevel(logging.INFO)
    try:
        with httpx.Client(timeout=10) as client:
            for name, request in cases(doors).items():
                if "auth" in request:
                    request["headers"] = {"Authorization": httpx.BasicAuth(*request["auth"])._auth_header}
                through_edge = answered(client, doors.edge_url, doors.framework_url, request, log)
                through_framework = answered(client, doors.framework_url, doors.framework_url, request, log)
                assert through_edge == through_framework, name
                _status, _headers, _, changed, lines = through_edge
                # Not vacuous: each request was counted and logged.
                assert lines, name
                if request.get("headers") and request.get("counted", True):  # a credential was presented
                    assert any(series.startswith("tokensmith_authentications_total") for series in changed), name
    finally:
        for logger in watched:
            logger.removeHandler(log)


def test_other_methods_of_the_edge_routes_get_fastapis_refusal(doors):
    with httpx.Client(timeout=10) as client:
        for method in ("POST", "HEAD", "DELETE"):
            for path in ("/api/v1/me",):
                edge = client.request(method, doors.edge_url + path)
                framework = client.request(method, doors.framework_url + path)
                assert edge.status_code == framework.status_code == 405, (method, path)
                assert edge.headers["allow"] == framework.headers["allow"] == "GET"
