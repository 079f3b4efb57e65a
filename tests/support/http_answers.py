"""The answering side of the tests' own little HTTP servers (an OpenID provider that misbehaves,
a CI issuer): ``http.server``'s handler, quiet, with one way to send an answer."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler


class QuietHandler(BaseHTTPRequestHandler):
    """Logs nothing (codes and tokens travel in URLs); ``send`` answers at once, with a length."""

    def log_message(self, *_args: object) -> None:
        pass

    def send(
        self, status: int, body: bytes, content_type: str = "application/json", headers: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
