"""CI without a stored secret: the job's OpenID Connect ID token exchanged for a short-lived token.

In a CI job the client finds its identity in the environment: ``TOKENSMITH_ID_TOKEN`` (GitLab's
``id_tokens``, or any CI that hands one out), or on GitHub Actions ``ACTIONS_ID_TOKEN_REQUEST_URL``
and ``ACTIONS_ID_TOKEN_REQUEST_TOKEN`` (a workflow with ``permissions: id-token: write``), with
which it asks GitHub for an ID token for the audience the server names
(``GET /api/v1/oidc/audience``). It exchanges that at ``POST /api/v1/oidc/exchange`` and uses
the token it gets, in every command; ``tokensmith ci token`` prints it for tools that want one.
``TOKENSMITH_PROJECT`` names the project when the ID token matches publishers of several.

The token is kept (``ci-token.json`` beside the client's logins, mode 0600) while it has more
than a minute left: git runs the client's credential helper on every fetch and push, and an ID
token is exchanged only once (a GitLab job has one). Reading it back loads nothing but the
standard library; httpx comes only for an exchange.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

from tokensmith.client import credentials
from tokensmith.client.errors import NotLoggedIn, Unreachable

ENV_ID_TOKEN = "TOKENSMITH_ID_TOKEN"
ENV_PROJECT = "TOKENSMITH_PROJECT"
GITHUB_URL, GITHUB_TOKEN = "ACTIONS_ID_TOKEN_REQUEST_URL", "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
KEPT_WHILE = timedelta(minutes=1)  # a kept token with less left is exchanged anew


@dataclass(frozen=True)
class CiToken:
    """What the exchange answered: a token, whose it is, what it opens, until when."""

    server: str
    username: str
    token: str
    project: str
    scopes: tuple[str, ...]
    expires_at: datetime

    def as_dict(self) -> dict[str, object]:
        return {
            "server": self.server,
            "username": self.username,
            "token": self.token,
            "project": self.project,
            "scopes": list(self.scopes),
            "expires_at": self.expires_at.isoformat(),
        }


def source() -> str | None:
    """Where this job's ID token comes from, in words; None outside a CI that gives one."""
    env = os.environ
    if env.get(ENV_ID_TOKEN):
        return ENV_ID_TOKEN
    if env.get(GITHUB_URL) and env.get(GITHUB_TOKEN):
        return "GitHub Actions"
    return None


def credential(server: str) -> credentials.Credential:
    """The credential of this job for ``server`` (a parsed URL): kept, or exchanged now."""
    found = token_for(server)
    where = f"this CI job's OpenID Connect ID token ({source()}), exchanged for a token of {found.project}"
    return credentials.Credential(server, found.username, found.token, "ci", where)


def token_for(server: str, *, now: datetime | None = None) -> CiToken:
    now = now or datetime.now(UTC)
    key = _key(server)
    kept = _kept(key, now)
    if kept is not None:
        return kept
    fresh = _exchange(server)
    _keep(key, fresh)
    return fresh


def _key(server: str) -> str:
    """What the kept token was got with: this server, this ID token (or GitHub's request), this project."""
    env = os.environ
    where = env.get(ENV_ID_TOKEN) or f"{env.get(GITHUB_URL)}\n{env.get(GITHUB_TOKEN)}"
    return hashlib.sha256(f"{server}\n{where}\n{env.get(ENV_PROJECT, '')}".encode()).hexdigest()


def _path() -> Path:
    return credentials.config_dir() / "ci-token.json"


def _kept(key: str, now: datetime) -> CiToken | None:
    try:
        with open(_path()) as handle:
            kept = json.load(handle)
        if kept.get("key") != key:
            return None
        found = CiToken(
            kept["server"],
            kept["username"],
            kept["token"],
            kept["project"],
            tuple(kept["scopes"]),
            datetime.fromisoformat(kept["expires_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return found if found.expires_at - now > KEPT_WHILE else None


def _keep(key: str, found: CiToken) -> None:
    credentials.write_private(_path(), json.dumps({"key": key, **found.as_dict()}) + "\n")


def _exchange(server: str) -> CiToken:
    from tokensmith.client.server_api import ServerApi  # httpx: only when a token must be got

    with ServerApi(server) as api:
        id_token = os.environ.get(ENV_ID_TOKEN) or _github_id_token(api.oidc_audience())
        answer = api.exchange_id_token(id_token, os.environ.get(ENV_PROJECT) or None)
    return CiToken(
        server,
        answer["username"],
        answer["token"],
        answer["project"],
        tuple(answer["scopes"]),
        datetime.fromisoformat(answer["expires_at"].replace("Z", "+00:00")),
    )


def _github_id_token(audience: str) -> str:
    """Ask GitHub for this job's ID token, for ``audience`` (what a runner lets a job with
    ``permissions: id-token: write`` do)."""
    import httpx

    url = os.environ[GITHUB_URL]
    separator = "&" if "?" in url else "?"
    try:
        answer = httpx.get(
            f"{url}{separator}{urlencode({'audience': audience})}",
            headers={"Authorization": f"bearer {os.environ[GITHUB_TOKEN]}", "Accept": "application/json"},
            timeout=30,
        )
    except httpx.HTTPError as error:
        raise Unreachable(f"GitHub did not give this job its ID token ({type(error).__name__}).") from None
    value = answer.json().get("value") if answer.status_code == 200 else None
    if not isinstance(value, str) or not value:
        raise NotLoggedIn(
            f"GitHub refused this job its ID token (HTTP {answer.status_code}): give the workflow "
            "`permissions: id-token: write`."
        )
    return value


def not_in_ci() -> NotLoggedIn:
    return NotLoggedIn(
        f"No CI identity here: set {ENV_ID_TOKEN} to the job's OpenID Connect ID token (GitLab: id_tokens), "
        "or run in GitHub Actions with `permissions: id-token: write`."
    )
