"""``tokensmith login --web``: the client's side of the OAuth 2.0 device authorization grant
(RFC 8628). The client asks the server for a code, the person approves it on the web site's
``/device`` page in a browser where they are signed in, and the client, polling meanwhile,
receives a new personal access token made for it."""

from __future__ import annotations

import os
import socket
import sys
import time
import unicodedata
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tokensmith.client.errors import ClientError, InvalidInput, Refused
from tokensmith.client.server_api import ServerApi

if TYPE_CHECKING:
    import httpx  # loaded by server_api, after the stub it puts in front of httpx's own program

CLIENT_ID = "tokensmith-cli"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:device_code"
# RFC 8628 §3.5: on slow_down, poll 5 seconds less often from then on.
SLOW_DOWN_STEP = 5


@dataclass(frozen=True)
class DeviceCode:
    device_code: str
    user_code: str
    verification_uri: str
    expires_in: int
    interval: int


def device_name() -> str:
    """This machine's name as the approval page and the token's name show it."""
    name = "".join(char for char in socket.gethostname() if unicodedata.category(char)[0] not in "CZ" or char == " ")
    return name.strip()[:64] or "unknown host"


def request_code(api: ServerApi, scopes: list[str]) -> DeviceCode:
    response = api.send(
        "POST",
        "/login/device/code",
        data={"client_id": CLIENT_ID, "scope": " ".join(scopes), "device_name": device_name()},
    )
    body = _json(response)
    if response.status_code != 200:
        raise _refusal(api.server, body, response.status_code)
    try:
        return DeviceCode(
            str(body["device_code"]),
            str(body["user_code"]),
            str(body["verification_uri"]),
            int(body["expires_in"]),
            int(body.get("interval", 5)),
        )
    except (KeyError, TypeError, ValueError):
        raise ClientError(f"{api.server} answered the device code request with something else than a code.") from None


def wait_for_token(
    api: ServerApi,
    code: DeviceCode,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> str:
    """Poll until the person approves (the new token), denies, or the code expires."""
    interval = max(code.interval, 1)
    deadline = clock() + code.expires_in
    while True:
        sleep(interval)
        response = api.send(
            "POST",
            "/login/device/token",
            data={"grant_type": GRANT_TYPE, "device_code": code.device_code, "client_id": CLIENT_ID},
        )
        body = _json(response)
        if response.status_code == 200 and body.get("access_token"):
            return str(body["access_token"])
        error = body.get("error")
        if error == "authorization_pending" and clock() < deadline:
            continue
        if error == "slow_down":
            interval += SLOW_DOWN_STEP
            continue
        if error == "access_denied":
            raise Refused("The request was denied in the browser: nothing was stored.", "access_denied")
        if error in ("expired_token", "authorization_pending"):
            raise Refused(
                "The code expired before it was approved: run `tokensmith login --web` again.", "expired_token"
            )
        raise _refusal(api.server, body, response.status_code)


def open_browser(url: str) -> bool:
    """Open ``url`` where a person can see a browser: a terminal, and a desktop to show it on."""
    desktop = sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    if not (desktop and sys.stdin.isatty() and sys.stdout.isatty()):
        return False
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _refusal(server: str, body: dict[str, Any], status: int) -> ClientError:
    description = str(body.get("error_description") or body.get("message") or f"it answered {status}")
    if body.get("error") in ("invalid_scope", "invalid_request"):
        return InvalidInput(f"{server} refused the login request: {description}", str(body.get("error")))
    if status == 404:
        return ClientError(f"{server} does not offer browser login (no /login/device/code): log in with a token.")
    return ClientError(f"{server} refused the login request: {description}", str(body.get("error", "")))
