"""A CI platform's OpenID Connect issuer of the tests' own, on a loopback port (RECIPES).

It serves its discovery document and its JWKS over real HTTP (``http.server`` in a thread),
signs real JWTs with RSA and EC keys (joserfc) carrying GitHub Actions' or GitLab CI's claims,
and answers GitHub's ID token request (``ACTIONS_ID_TOKEN_REQUEST_URL``) as a runner's job sees
it. It can rotate its keys, go down, and misbehave on purpose (``mode``): what the server must
survive. Every ID token it signs goes into the ledger of secrets.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from joserfc import jws
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from tests.support.http_answers import QuietHandler
from tests.support.ledger import remember
from tests.support.ports import free_port

Key = RSAKey | ECKey | OKPKey
# What ``mode`` makes the issuer do:
MODES = (
    "ok",
    "down",  # 503 for everything
    "jwks_elsewhere",  # the discovery document points jwks_uri at another host
    "wrong_issuer",  # the discovery document names another issuer
    "huge_jwks",  # a JWKS of 10,000 keys
    "endless_jwks",  # a JWKS that says it is 5 GB long, and keeps coming
    "chunked_jwks",  # a JWKS without a length, coming forever
    "silent",  # accepts the connection, never answers
    "redirect",  # the JWKS redirects elsewhere
    "symmetric_jwks",  # a JWKS of one oct key (its bytes: the RSA key's public PEM)
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


class CiIssuer:
    def __init__(self) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.rsa = RSAKey.generate_key(2048, parameters={"kid": "rsa-1", "alg": "RS256", "use": "sig"})
        self.ec = ECKey.generate_key("P-256", parameters={"kid": "ec-1", "alg": "ES256", "use": "sig"})
        self.published: list[Key] = [self.rsa, self.ec]
        self.mode = "ok"
        self.jwks_fetches = 0
        self.discovery_fetches = 0
        # What a GitHub runner gives its job to ask for an ID token with.
        self.request_token = remember(secrets.token_urlsafe(24))
        self.github_claims_asked: dict[str, Any] = {}
        self._silence = threading.Event()
        self.held = threading.Event()  # set when a request reaches it while it is "silent"
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- ID tokens ------------------------------------------------------------------------------

    def claims(
        self, audience: str, *, lifetime: int = 300, issued: float | None = None, **extra: Any
    ) -> dict[str, Any]:
        now = int(time.time() if issued is None else issued)
        return {
            "iss": self.issuer,
            "aud": audience,
            "jti": str(uuid.uuid4()),
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            **extra,
        }

    def github_claims(
        self, audience: str, repository: str = "acme/app", ref: str = "refs/heads/main", **extra: Any
    ) -> dict[str, Any]:
        """GitHub Actions' claims for a workflow run of ``repository`` on ``ref``."""
        owner = repository.split("/")[0]
        return self.claims(
            audience,
            sub=f"repo:{repository}:ref:{ref}",
            repository=repository,
            repository_id="892013",
            repository_owner=owner,
            repository_owner_id="61203",
            ref=ref,
            ref_type="branch",
            sha="a" * 40,
            workflow="Publish to Tokensmith",
            job_workflow_ref=f"{repository}/.github/workflows/tokensmith.yml@{ref}",
            event_name="push",
            run_id="4242",
            run_number="17",
            run_attempt="1",
            actor="octocat",
            runner_environment="github-hosted",
            **extra,
        )

    def gitlab_claims(
        self, audience: str, project_path: str = "acme/app", ref: str = "main", **extra: Any
    ) -> dict[str, Any]:
        """GitLab CI's claims (an ``id_tokens`` entry) for a pipeline of ``project_path`` on ``ref``."""
        return self.claims(
            audience,
            sub=f"project_path:{project_path}:ref_type:branch:ref:{ref}",
            namespace_id="72",
            namespace_path=project_path.split("/")[0],
            project_id="22",
            project_path=project_path,
            user_id="42",
            user_login="grace",
            pipeline_id="1212",
            pipeline_source="push",
            job_id="9001",
            ref=ref,
            ref_type="branch",
            ref_protected="true",
            runner_environment="gitlab-hosted",
            **extra,
        )

    def sign(self, claims: dict[str, Any], *, key: Key | None = None, header: dict[str, Any] | None = None) -> str:
        """A real JWT: RS256 with the RSA key by default, ES256 with the EC one, or ``key``'s."""
        key = key or self.rsa
        algorithm = (
            (header or {}).get("alg") or key.get("alg") or {"RSA": "RS256", "EC": "ES256", "OKP": "EdDSA"}[key.key_type]
        )
        protected = {"typ": "JWT", "alg": algorithm, "kid": key.kid, **(header or {})}
        protected = {name: value for name, value in protected.items() if value is not None}
        payload = json.dumps(claims).encode()
        return remember(jws.serialize_compact(protected, payload, key, algorithms=[algorithm]))

    def unsigned(self, claims: dict[str, Any]) -> str:
        """``alg: none``: no signature at all."""
        return remember(f"{_b64(json.dumps({'alg': 'none'}).encode())}.{_b64(json.dumps(claims).encode())}.")

    def hmac_with_public_key(self, claims: dict[str, Any], algorithm: str = "HS256") -> str:
        """The classic confusion: HS256 keyed with the RSA key's public PEM, which a verifier that
        lets the token choose its algorithm would take as the HMAC secret."""
        header = _b64(json.dumps({"alg": algorithm, "kid": self.rsa.kid}).encode())
        body = _b64(json.dumps(claims).encode())
        secret = self.rsa.as_pem(private=False)
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[algorithm]
        signature = hmac.new(secret, f"{header}.{body}".encode(), digest).digest()
        return remember(f"{header}.{body}.{_b64(signature)}")

    def rotate(self) -> RSAKey:
        """A new RSA key, published beside the old one (as issuers roll keys); returned to sign with."""
        number = len(self.published) + 1
        key = RSAKey.generate_key(2048, parameters={"kid": f"rsa-{number}", "alg": "RS256", "use": "sig"})
        self.published.append(key)
        return key

    # --- what it serves ----------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        jwks_uri = f"{self.issuer}/.well-known/jwks"
        if self.mode == "jwks_elsewhere":
            jwks_uri = "https://keys.elsewhere.example/.well-known/jwks"
        return {
            "issuer": "https://elsewhere.example" if self.mode == "wrong_issuer" else self.issuer,
            "jwks_uri": jwks_uri,
            "subject_types_supported": ["public", "pairwise"],
            "response_types_supported": ["id_token"],
            "claims_supported": ["sub", "aud", "exp", "iat", "iss", "jti", "nbf", "ref", "repository"],
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            "scopes_supported": ["openid"],
        }

    def jwks(self) -> dict[str, Any]:
        if self.mode == "huge_jwks":  # small enough to pass the size limit: the count must stop it
            return {"keys": [{"kty": "EC", "kid": f"k{number}"} for number in range(10_000)]}
        if self.mode == "symmetric_jwks":
            return {"keys": [{"kty": "oct", "kid": self.rsa.kid, "k": _b64(self.rsa.as_pem(private=False))}]}
        return KeySet(self.published).as_dict(private=False)

    def github_id_token(self, query: dict[str, str], authorization: str | None) -> tuple[int, dict[str, Any]]:
        """GitHub's answer to a job asking ``ACTIONS_ID_TOKEN_REQUEST_URL&audience=…``."""
        if authorization != f"bearer {self.request_token}":
            return 401, {"message": "Bad credentials"}
        audience = query.get("audience", "https://github.com/acme")
        claims = self.github_claims(audience, **self.github_claims_asked)
        return 200, {"count": 1, "value": self.sign(claims)}

    @property
    def github_request_url(self) -> str:
        return f"{self.issuer}/github/id-token?api-version=2.0"

    # --- life cycle --------------------------------------------------------------------------------

    def start(self) -> CiIssuer:
        issuer = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def handle(self) -> None:
                with contextlib.suppress(OSError):  # a reader that hung up on an endless answer
                    super().handle()

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if issuer.mode == "silent":
                    issuer.held.set()
                    issuer._silence.wait(60)
                    return
                if issuer.mode == "down":
                    self.send(503, b'{"message": "down for maintenance"}')
                elif parts.path == "/.well-known/openid-configuration":
                    issuer.discovery_fetches += 1
                    self.send(200, json.dumps(issuer.discovery()).encode())
                elif parts.path == "/.well-known/jwks":
                    issuer.jwks_fetches += 1
                    self._jwks()
                elif parts.path == "/github/id-token":
                    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
                    status, answer = issuer.github_id_token(query, self.headers.get("Authorization"))
                    self.send(status, json.dumps(answer).encode())
                else:
                    self.send(404, b"{}")

            def _jwks(self) -> None:
                if issuer.mode == "redirect":
                    self.send(302, b"", headers={"Location": "https://keys.elsewhere.example/.well-known/jwks"})
                elif issuer.mode == "endless_jwks":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(5 * 1024**3))
                    self.end_headers()
                    self._stream_forever()
                elif issuer.mode == "chunked_jwks":
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self._stream_forever(chunked=True)
                else:
                    self.send(200, json.dumps(issuer.jwks()).encode())

            def _stream_forever(self, chunked: bool = False) -> None:
                block = b'{"keys": [' + b" " * 65536
                try:
                    for _ in range(80_000):  # 5 GB, if anybody read that far
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(block), block) if chunked else block)
                except OSError:
                    return  # the reader hung up: what it should do

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Down for good: nothing listens on its port any more."""
        self._silence.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)

    def restart(self) -> CiIssuer:
        """Back on the same port, with the same keys."""
        self._silence.clear()
        return self.start()

    @contextmanager
    def running(self) -> Iterator[CiIssuer]:
        self.start()
        try:
            yield self
        finally:
            self.stop()
