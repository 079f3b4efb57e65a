"""The access log, off the request's path.

uvicorn logs each request through ``logging`` as its answer starts: a LogRecord made, filtered,
formatted (a copy of the record, the status's phrase looked up) and written with a flush, all
on the event loop — about 75 µs, a third of a token check. Here the protocol (web/draining.py)
hands uvicorn ``ACCESS_LOG`` instead of its ``uvicorn.access`` logger: ``info`` only puts the
request's fields on a queue, and a thread formats the lines, each once, and writes them in one
write every ``FLUSH_S``. A line is the one uvicorn writes, field for field —
``INFO:     127.0.0.1:50312 - "GET /api/v1/me HTTP/1.1" 200 OK`` — with the query string hidden
(``?…``): the identity provider sends the authorization code to the callback in it, and it must
not reach a log. Colours, which uvicorn adds on a terminal, are left out.

Nothing is lost on a clean stop: the application's shutdown (after the last answer) writes what
is queued (``flush``), and so does the interpreter's exit. A crash loses at most the last
``FLUSH_S`` of lines.
"""

from __future__ import annotations

import atexit
import collections
import http
import sys
import threading
from typing import Any, TextIO

FLUSH_S = 0.2
PHRASES = {status.value: status.phrase for status in http.HTTPStatus}


def access_line(client: str, method: str, path: str, http_version: str, status: int) -> str:
    """The line uvicorn's access formatter writes for these fields (without colours), the query
    string hidden."""
    if "?" in path:
        path = path.split("?", 1)[0] + "?…"
    return f'INFO:     {client} - "{method} {path} HTTP/{http_version}" {status} {PHRASES.get(status, "")}\n'


class AccessLog:
    """What the protocol calls ``access_logger.info(...)`` on (uvicorn's call, five fields)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._pending: collections.deque[tuple[Any, ...]] = collections.deque()
        self._writing = threading.Lock()
        self._writer: threading.Thread | None = None

    def info(self, _message: str, *fields: Any) -> None:
        self._pending.append(fields)
        if self._writer is None:
            self._start()

    def _start(self) -> None:
        self._writer = threading.Thread(target=self._write_behind, name="access-log", daemon=True)
        self._writer.start()
        atexit.register(self.flush)

    def _write_behind(self) -> None:
        stop = threading.Event()
        while not stop.wait(FLUSH_S):
            self.flush()

    def flush(self) -> None:
        """Write every line queued so far, in one write."""
        with self._writing:
            if not self._pending:
                return
            lines = []
            while self._pending:  # append and popleft are atomic: nothing queued meanwhile is lost
                lines.append(access_line(*self._pending.popleft()))
            stream = self._stream or sys.stdout
            stream.write("".join(lines))
            stream.flush()


ACCESS_LOG = AccessLog()
