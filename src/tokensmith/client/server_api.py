"""The client's side of the server's HTTP API: httpx, and the server's refusals turned into the
client's errors, so that every command reports them alike, with the same exit codes."""

from __future__ import annotations

import sys
from typing import Any

# httpx's package imports its own command-line program when click, rich and pygments are
# installed (Typer brings them): 45 ms of every command's start for a program the client never
# runs. A None in sys.modules makes that import fail, and httpx falls back to a stub.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]  # None: the import fails, by design
import httpx  # noqa: E402

from tokensmith import __version__  # noqa: E402 (after the stub above, like httpx)
from tokensmith.client.credentials import Credential  # noqa: E402
from tokensmith.client.errors import ClientError, Conflict, InvalidInput, NotFound, Refused, Unreachable  # noqa: E402

ERRORS: dict[int, type[ClientError]] = {
    401: Refused,
    403: Refused,
    404: NotFound,
    409: Conflict,
    413: InvalidInput,
    422: InvalidInput,
}
USER_AGENT = f"tokensmith-cli/{__version__}"
JSONObject = dict[str, Any]


class ServerApi:
    """One server, with a credential (or none: the device grant's two calls need none)."""

    def __init__(
        self,
        server: str,
        credential: Credential | None = None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30,
    ) -> None:
        self.server = server
        headers = {"User-Agent": USER_AGENT}
        if credential is not None and not credential.username:  # a token alone: Bearer
            headers["Authorization"] = f"Bearer {credential.token}"
        self.client = httpx.Client(
            base_url=server,
            timeout=timeout,
            headers=headers,
            transport=transport,
            auth=(credential.username, credential.token) if credential and credential.username else None,
        )

    @classmethod
    def of(cls, credential: Credential, **kwargs: Any) -> ServerApi:
        return cls(credential.server, credential, **kwargs)

    def __enter__(self) -> ServerApi:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.close()

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The server's answer, whatever its status; Unreachable when there is none."""
        server = self.server
        try:
            return self.client.request(method, path, **kwargs)
        except httpx.ConnectError as error:
            if "CERTIFICATE" in str(error).upper() or "SSL" in str(error).upper():
                raise Unreachable(
                    f"The TLS certificate of {server} could not be verified ({error}). Check the URL, or "
                    "the certificate authorities this machine trusts."
                ) from None
            raise Unreachable(f"Cannot reach {server}: is the server running, and the URL right?") from None
        except httpx.TimeoutException:
            raise Unreachable(f"{server} did not answer in time. Try again in a moment.") from None
        except httpx.HTTPError as error:
            raise Unreachable(f"Talking to {server} failed: {type(error).__name__}.") from None

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The server's answer when it is a success; its refusal, as the client's error, otherwise."""
        response = self.send(method, path, **kwargs)
        if response.is_success:
            return response
        raise self.refusal(response)

    def refusal(self, response: httpx.Response) -> ClientError:
        try:
            body = response.json()
            message, code = str(body.get("message", "")), str(body.get("error", ""))
        except (ValueError, AttributeError):
            message, code = "", ""
        if response.status_code == 503:
            return Unreachable(f"The server is temporarily unavailable: {message or 'try again in a moment.'}", code)
        kind = ERRORS.get(response.status_code, ClientError)
        return kind(message or f"The server answered {response.status_code}.", code)

    # --- the REST API -------------------------------------------------------------------------
    # Its answers are JSON objects, or lists of them, shaped as the server's web/schemas.py says.

    def _object(self, method: str, path: str, **kwargs: Any) -> JSONObject:
        answer: JSONObject = self.call(method, path, **kwargs).json()
        return answer

    def _objects(self, method: str, path: str) -> list[JSONObject]:
        answer: list[JSONObject] = self.call(method, path).json()
        return answer

    def me(self) -> JSONObject:
        return self._object("GET", "/api/v1/me")

    def tokens(self) -> list[JSONObject]:
        return self._objects("GET", "/api/v1/tokens")

    def revoke(self, token_id: int) -> None:
        self.call("DELETE", f"/api/v1/tokens/{token_id}")

    def rotate(self, token_id: int) -> JSONObject:
        return self._object("POST", f"/api/v1/tokens/{token_id}/rotate")

    def release(self, project: str, revision: str, version: str) -> JSONObject:
        return self._object(
            "POST",
            f"/studio/v2/project/{project}/releases",
            json={"revision": revision, "versionName": version},
            timeout=600,
        )

    def register(self, project: str, description: str) -> JSONObject:
        return self._object("POST", "/api/v1/instances", json={"project": project, "description": description})

    def projects(self) -> list[JSONObject]:
        return self._objects("GET", "/api/v1/projects")

    # --- workload identity: a CI job's ID token for a token (no credential) -----------------------

    def oidc_audience(self) -> str:
        return str(self._object("GET", "/api/v1/oidc/audience")["audience"])

    def exchange_id_token(self, id_token: str, project: str | None = None) -> JSONObject:
        body = {"token": id_token, **({"project": project} if project else {})}
        return self._object("POST", "/api/v1/oidc/exchange", json=body)
