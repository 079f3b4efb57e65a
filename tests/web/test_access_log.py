"""The access log: uvicorn's line, field for field, written behind the requests, none lost when
the server is told to stop."""

from __future__ import annotations

import logging
import os
import re
import signal

import httpx
import pytest
from uvicorn.config import LOGGING_CONFIG
from uvicorn.logging import AccessFormatter

from tests.support.servers import LiveServer
from tokensmith.web.access_log import access_line


@pytest.mark.parametrize(
    "fields",
    [
        ("127.0.0.1:50312", "GET", "/api/v1/me", "1.1", 200),
        ("10.1.2.3:1", "POST", "/api/v1/tokens/revoke", "1.1", 202),
        ("[::1]:8000", "DELETE", "/api/v1/tokens/7", "1.0", 503),
        ("", "GET", "/odd", "1.1", 599),  # no client, a status without a phrase
    ],
)
def test_a_line_is_the_one_uvicorn_writes(fields):
    uvicorn_formatter = AccessFormatter(fmt=LOGGING_CONFIG["formatters"]["access"]["fmt"], use_colors=False)
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d', fields, None)
    assert access_line(*fields) == uvicorn_formatter.format(record) + "\n"


def test_a_query_string_is_hidden():
    line = access_line("127.0.0.1:1", "GET", "/login/callback?code=secret-code&state=s", "1.1", 303)
    assert '"GET /login/callback?… HTTP/1.1" 303 See Other' in line and "secret-code" not in line


@pytest.mark.slow
def test_every_request_answered_before_a_stop_has_its_line(tmp_path):
    live = LiveServer(tmp_path / "data").start()
    try:
        with httpx.Client(base_url=live.base_url) as client:
            sent = [client.get("/healthz", params={"n": n}).status_code for n in range(300)]
            sent.append(client.get("/api/v1/me").status_code)
        os.kill(live.process.pid, signal.SIGTERM)  # at once: lines still queued must be written
        live.process.wait(timeout=30)
    finally:
        live.stop()
    lines = re.findall(r'^INFO: +127\.0\.0\.1:\d+ - "GET (\S+) HTTP/1\.1" (\d+) (.*)$', live.console(), re.MULTILINE)
    lines = lines[lines.index(("/healthz?…", "200", "OK")) :]  # the start's own waits for /healthz before
    assert lines == [("/healthz?…", "200", "OK")] * 300 + [("/api/v1/me", "401", "Unauthorized")]
    assert sent[-1] == 401
