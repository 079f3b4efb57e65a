"""The client's side of the REST API: httpx, and the server's refusals turned back into the
domain's errors (so that every command reports them the same way, with the same exit codes)."""

from __future__ import annotations

from typing import Any

import httpx

from tokensmith import __version__
from tokensmith.cli.credentials import Credential
from tokensmith.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    NotFound,
    NotPermitted,
    ServerUnreachable,
    StoreUnavailable,
    TokensmithError,
)

ERRORS: dict[int, type[TokensmithError]] = {
    401: AuthenticationFailed, 403: NotPermitted, 404: NotFound, 409: Conflict, 422: InvalidInput,
    503: StoreUnavailable,
}


class ServerApi:
    def __init__(self, credential: Credential, *, transport: httpx.BaseTransport | None = None,
                 timeout: float = 30) -> None:
        self.credential = credential
        self.client = httpx.Client(
            base_url=credential.server, auth=(credential.username, credential.token), timeout=timeout,
            headers={"User-Agent": f"tokensmith-cli/{__version__}"}, transport=transport,
        )

    def __enter__(self) -> ServerApi:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.close()

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        server = self.credential.server
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.ConnectError as error:
            if "CERTIFICATE" in str(error).upper() or "SSL" in str(error).upper():
                raise ServerUnreachable(
                    f"The TLS certificate of {server} could not be verified ({error}). Check the URL, or "
                    "the certificate authorities this machine trusts."
                ) from None
            raise ServerUnreachable(f"Cannot reach {server}: is the server running, and the URL right?") from None
        except httpx.TimeoutException:
            raise ServerUnreachable(f"{server} did not answer in time. Try again in a moment.") from None
        except httpx.HTTPError as error:
            raise ServerUnreachable(f"Talking to {server} failed: {type(error).__name__}.") from None
        if response.is_success:
            return response
        raise self._refusal(response)

    def _refusal(self, response: httpx.Response) -> TokensmithError:
        try:
            body = response.json()
            message, code = body.get("message", ""), body.get("error", "")
        except ValueError:
            message, code = "", ""
        if response.status_code == 503:
            return StoreUnavailable(f"The server is temporarily unavailable: {message or 'try again in a moment.'}")
        kind = ERRORS.get(response.status_code, TokensmithError)
        error = kind(message or f"The server answered {response.status_code}.")
        error.code = code or error.code
        return error

    def me(self) -> dict:
        return self.call("GET", "/api/v1/me").json()

    def tokens(self) -> list[dict]:
        return self.call("GET", "/api/v1/tokens").json()

    def revoke(self, token_id: int) -> None:
        self.call("DELETE", f"/api/v1/tokens/{token_id}")

    def rotate(self, token_id: int) -> dict:
        return self.call("POST", f"/api/v1/tokens/{token_id}/rotate").json()

    def release(self, project: str, revision: str, version: str) -> dict:
        return self.call("POST", f"/studio/v2/project/{project}/releases",
                         json={"revision": revision, "versionName": version}, timeout=600).json()

    def register(self, project: str, description: str) -> dict:
        return self.call("POST", "/api/v1/instances", json={"project": project, "description": description}).json()

    def projects(self) -> list[dict]:
        return self.call("GET", "/api/v1/projects").json()
