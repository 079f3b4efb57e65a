"""An OpenID provider that misbehaves on purpose, on a loopback port.

The real provider (node-oidc-provider, ``oidc_provider.py``) only ever issues correct ID
tokens. What Tokensmith must refuse — a token signed with another key, expired, issued to
another client or for another nonce, a discovery document that is garbage — needs a
provider that can be told to send exactly that. Everything else about it is honest: it
speaks HTTP, checks the PKCE verifier against the challenge, and issues each code once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from tests.support.http_answers import QuietHandler
from tests.support.ledger import remember
from tests.support.ports import free_port

CLIENT_ID = "tokensmith-tests"


class RogueProvider:
    """``mode`` picks the misbehaviour of the next token answer: "honest", "wrong_key",
    "expired", "wrong_audience", "wrong_nonce", "wrong_issuer", "unsigned", "garbage_token",
    "no_id_token", "token_endpoint_broken", "token_answer_odd", "jwks_garbage"; ``discovery`` picks
    the discovery answer: "ok", "garbage", "not_json", "wrong_issuer", "500"."""

    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = RSAKey.generate_key(2048, parameters={"kid": "good", "alg": "RS256", "use": "sig"})
        self.other_key = RSAKey.generate_key(2048, parameters={"kid": "good", "alg": "RS256", "use": "sig"})
        self.mode = "honest"
        self.discovery = "ok"
        self.claims: dict[str, Any] = {
            "sub": "rogue-1",
            "preferred_username": "rogue.user",
            "email": "rogue.user@example.test",
            "name": "Rogue User",
        }
        self.codes: dict[str, dict[str, str]] = {}  # code -> what the authorization request said
        self.token_requests = 0
        self._server: ThreadingHTTPServer | None = None

    # --- what the endpoints answer -----------------------------------------------------------

    def discovery_document(self) -> tuple[int, bytes]:
        if self.discovery == "500":
            return 500, b"upstream exploded"
        if self.discovery == "not_json":
            return 200, b"<html>maintenance</html>"
        if self.discovery == "garbage":
            return 200, json.dumps({"hello": "world"}).encode()
        issuer = "https://elsewhere.example" if self.discovery == "wrong_issuer" else self.issuer
        return 200, json.dumps(
            {
                "issuer": issuer,
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "jwks_uri": f"{self.issuer}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
        ).encode()

    def authorize(self, query: dict[str, str]) -> str:
        """Sign the person in at once and send them back with a code."""
        code = remember(secrets.token_urlsafe(16))
        self.codes[code] = query
        return f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"

    def token(self, form: dict[str, str]) -> tuple[int, dict[str, Any] | bytes]:
        self.token_requests += 1
        if self.mode == "token_endpoint_broken":
            return 500, b"<html>Internal Server Error</html>"
        if self.mode == "token_answer_odd":
            return 200, {"hello": "world"}
        request = self.codes.pop(form.get("code", ""), None)
        if request is None:
            return 400, {"error": "invalid_grant", "error_description": "code unknown or used"}
        challenge = (
            base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest())
            .decode()
            .rstrip("=")
        )
        if request.get("code_challenge_method") != "S256" or challenge != request.get("code_challenge"):
            return 400, {"error": "invalid_grant", "error_description": "PKCE verification failed"}
        if self.mode == "no_id_token":
            return 200, {"access_token": "opaque", "token_type": "Bearer"}
        return 200, {
            "access_token": "opaque",
            "token_type": "Bearer",
            "expires_in": 300,
            "id_token": remember(self._id_token(request)),
        }

    def _id_token(self, request: dict[str, str]) -> str:
        now = int(time.time())
        claims = {
            "iss": "https://elsewhere.example" if self.mode == "wrong_issuer" else self.issuer,
            "aud": "someone-else" if self.mode == "wrong_audience" else request["client_id"],
            "iat": now - (7200 if self.mode == "expired" else 0),
            "exp": now - 3600 if self.mode == "expired" else now + 300,
            "nonce": "not-the-nonce" if self.mode == "wrong_nonce" else request.get("nonce"),
            **self.claims,
        }
        if self.mode == "garbage_token":
            return "this.is.not-a-jwt"
        if self.mode == "unsigned":
            encode = lambda part: base64.urlsafe_b64encode(json.dumps(part).encode()).decode().rstrip("=")  # noqa: E731
            return f"{encode({'alg': 'none'})}.{encode(claims)}."
        key = self.other_key if self.mode == "wrong_key" else self.key
        return jwt.encode({"alg": "RS256", "kid": "good"}, claims, key)

    def jwks(self) -> dict[str, Any] | bytes:
        if self.mode == "jwks_garbage":
            return {"keys": [{"kty": "nonsense"}]}
        return KeySet([self.key]).as_dict(private=False)

    # --- life cycle ------------------------------------------------------------------------

    @contextmanager
    def running(self) -> Iterator[RogueProvider]:
        provider = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path == "/.well-known/openid-configuration":
                    self.send(*provider.discovery_document())
                elif parts.path == "/jwks":
                    self.send(200, json.dumps(provider.jwks()).encode())
                elif parts.path == "/authorize":
                    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                    self.send(302, b"", headers={"Location": provider.authorize(query)})
                else:
                    self.send(404, b"{}")

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                form = {key: values[0] for key, values in parse_qs(self.rfile.read(length).decode()).items()}
                if urlsplit(self.path).path != "/token":
                    self.send(404, b"{}")
                    return
                status, answer = provider.token(form)
                if isinstance(answer, bytes):
                    self.send(status, answer, content_type="text/html")
                else:
                    self.send(status, json.dumps(answer).encode())

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()
            thread.join(timeout=5)
