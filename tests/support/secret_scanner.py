"""GitHub's side of secret scanning, of the tests' own, on loopback: the server that publishes the
signing keys, and a scanner that signs its reports with them.

``KeyServer`` serves ``{"public_keys": [{"key_identifier", "key", "is_current"}]}`` as GitHub's
``/meta/public_keys/secret_scanning`` does, from a thread of the test process, on a port it keeps
across ``stop`` and ``start`` (a test takes it down and brings it back); it counts the requests it
answered. ``SigningKey`` is a P-256 key whose identifier is the SHA-256 of its public key, as
GitHub's are. ``Scanner`` posts reports signed by one of them, or by none, or badly.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.support.ports import free_port

KEYS_PATH = "/meta/public_keys/secret_scanning"
TOKEN_TYPE = "tokensmith_personal_access_token"


class SigningKey:
    def __init__(self, curve: ec.EllipticCurve | None = None) -> None:
        self.private = ec.generate_private_key(curve or ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.identifier = hashlib.sha256(der).hexdigest()

    @property
    def pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self.private.sign(body, ec.ECDSA(hashes.SHA256()))).decode()


class KeyServer:
    """``keys``: what it publishes, the last one current; ``answer``: None (the list), or raw
    bytes and a status to answer instead (a broken server)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.keys: list[SigningKey] = []
        self.answer: tuple[int, bytes] | None = None
        self.requests = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{KEYS_PATH}"

    def publish(self, *keys: SigningKey) -> KeyServer:
        self.keys = list(keys)
        return self

    def document(self) -> bytes:
        return json.dumps(
            {
                "public_keys": [
                    {"key_identifier": key.identifier, "key": key.pem, "is_current": key is self.keys[-1]}
                    for key in self.keys
                ]
            }
        ).encode()

    def start(self) -> KeyServer:
        keys = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with keys._lock:
                    keys.requests += 1
                status, body = keys.answer or ((200, keys.document()) if self.path == KEYS_PATH else (404, b"{}"))
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, name="key-server", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def report(*tokens: str, url: str = "https://github.com/octocat/hello/blob/1a2b3c4d/config.env") -> bytes:
    """A report as GitHub sends one: compact JSON, one finding per token."""
    return json.dumps(
        [{"token": token, "type": TOKEN_TYPE, "url": url, "source": "content"} for token in tokens],
        separators=(",", ":"),
    ).encode()


class Scanner:
    """Posts reports to a server's partner endpoint, as GitHub does."""

    path = "/api/v1/secret-scanning/github"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def post(
        self,
        body: bytes,
        key: SigningKey | None,
        *,
        signature: str | None = None,
        identifier: str | None = None,
        extra: Sequence[tuple[str, str]] = (),
    ) -> httpx.Response:
        """``body`` signed by ``key`` (None: unsigned); ``signature`` or ``identifier`` override
        what goes in the headers."""
        headers = {"Content-Type": "application/json"}
        if key is not None:
            headers["Github-Public-Key-Identifier"] = identifier or key.identifier
            headers["Github-Public-Key-Signature"] = signature or key.sign(body)
        headers.update(extra)
        return httpx.post(f"{self.base_url}{self.path}", content=body, headers=headers, timeout=30)
