"""A real OpenID Connect provider on a loopback port: node-oidc-provider, run by Node.js.

``tests/support/oidc/provider.mjs`` configures it from a JSON file this handle writes at
``start()``; its console goes to a log file the ledger watches, and it is stopped by its own
process id. One client is registered, with a client secret the ledger remembers. Any login
name signs in on its development login page; ``accounts`` overrides the claims of a login
(by default sub, preferred_username and name are the login, email is LOGIN@example.test).
ID tokens carry the profile and email claims, as Keycloak's do; ``thin_id_tokens=True`` leaves
them to the userinfo endpoint, as oidc-provider does by default.

Everything lives in the provider's memory: ``restart()`` forgets sessions, codes and grants
and signs ID tokens with a new key.

Without a browser, ``sign_in_with_forms`` walks an ``httpx.Client`` through the development
login and consent pages, and ``sign_out_with_forms`` through the sign-out confirmation.
"""

from __future__ import annotations

import html
import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from tests.support.ledger import remember, watch
from tests.support.ports import free_port
from tests.support.processes import stop_process, wait_until_answering

PACKAGE_DIR = Path(__file__).parent / "oidc"
SCRIPT = PACKAGE_DIR / "provider.mjs"
INSTALLED_MARK = PACKAGE_DIR / "node_modules" / "oidc-provider"
DISCOVERY_PATH = "/.well-known/openid-configuration"


class OidcProviderUnavailable(RuntimeError):
    """Node.js or the provider's npm packages are missing and cannot be installed here."""


class OidcProviderFailed(RuntimeError):
    """The provider exited or did not answer; the message holds its log."""


def ensure_installed() -> None:
    """The provider's npm packages, installed from the lock file when missing.

    ``make test`` installs them before the run; a plain ``pytest`` on a fresh clone gets the
    same ``npm ci`` here (two seconds, from the npm registry) rather than a failure.
    """
    if shutil.which("node") is None:
        raise OidcProviderUnavailable("node is not installed: run `make test` (or `make system-packages`)")
    if INSTALLED_MARK.is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise OidcProviderUnavailable("npm is not installed: run `make test` (or `make system-packages`)")
    result = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0 or not INSTALLED_MARK.is_dir():
        raise OidcProviderUnavailable(
            f"`npm ci` in {PACKAGE_DIR} failed; run `make test` to install the provider:\n{result.stderr}"
        )


def _as_list(value: str | Iterable[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


class OidcProvider:
    """node-oidc-provider for one client, on 127.0.0.1.

    The configuration is written at ``start()``: redirect URIs may be added to
    ``redirect_uris`` after construction, once the relying party's port is known.
    """

    def __init__(
        self,
        work_dir: Path,
        *,
        redirect_uris: str | Iterable[str] = (),
        post_logout_redirect_uris: str | Iterable[str] = (),
        accounts: Mapping[str, Mapping[str, object]] | None = None,
        client_id: str = "tokensmith",
        id_token_ttl: int | None = None,
        thin_id_tokens: bool = False,
        name: str = "oidc-provider",
    ) -> None:
        self.work_dir = work_dir
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.client_id = client_id
        self.client_secret = remember(secrets.token_urlsafe(32))
        self.redirect_uris = _as_list(redirect_uris)
        self.post_logout_redirect_uris = _as_list(post_logout_redirect_uris)
        self.accounts = {login: dict(claims) for login, claims in (accounts or {}).items()}
        self.id_token_ttl = id_token_ttl
        self.thin_id_tokens = thin_id_tokens
        self.config_path = work_dir / f"{name}.json"
        self.log_path = watch(work_dir / f"{name}.log")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def discovery_url(self) -> str:
        return self.issuer + DISCOVERY_PATH

    def config(self) -> dict[str, object]:
        """What provider.mjs reads; it holds the client secret, so it stays in ``work_dir``."""
        config: dict[str, object] = {
            "issuer": self.issuer,
            "port": self.port,
            "clients": [
                {
                    "client_id": self.client_id,
                    "client_secret": self.client_secret,
                    "redirect_uris": self.redirect_uris,
                    "post_logout_redirect_uris": self.post_logout_redirect_uris,
                }
            ],
            "accounts": self.accounts,
            "cookie_keys": [secrets.token_urlsafe(32)],
            "thin_id_tokens": self.thin_id_tokens,
        }
        if self.id_token_ttl is not None:
            config["id_token_ttl"] = self.id_token_ttl
        return config

    # --- life cycle ---------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> OidcProvider:
        ensure_installed()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(self.config()))
        self.config_path.chmod(0o600)
        # DEBUG=oidc-provider:* would trace requests, codes and tokens included.
        env = {key: value for key, value in os.environ.items() if key not in ("DEBUG", "NODE_DEBUG")}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [shutil.which("node") or "node", str(SCRIPT), str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=PACKAGE_DIR,
                env=env,
            )
        self._wait_until_ready(timeout)
        return self

    def _wait_until_ready(self, timeout: float) -> None:
        wait_until_answering(
            self.process,
            self.discovery_url,
            statuses=(200,),
            timeout=timeout,
            name="oidc-provider",
            console=self.console,
            failure=OidcProviderFailed,
        )

    def stop(self) -> None:
        stop_process(self.process)

    def restart(self) -> OidcProvider:
        self.stop()
        return self.start()

    def console(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # --- what a relying party reads ------------------------------------------------------------

    def discovery(self) -> dict[str, object]:
        return httpx.get(self.discovery_url, timeout=10).raise_for_status().json()


# --- a browser without JavaScript, as far as the provider's pages need one ------------------------

_FORM = re.compile(r"<form\b[^>]*>.*?</form>", re.S)
_ACTION = re.compile(r'\baction="([^"]*)"')
_HIDDEN = re.compile(r'<input type="hidden" name="([^"]+)" value="([^"]*)"\s*/?>')
# The script of the provider's self-posting pages (it signs a browser out on its own, e.g.
# before signing it in as someone else).
SELF_POSTING = "document.forms[0].submit()"
MAX_STEPS = 16


def _form_of(page: httpx.Response) -> tuple[str, dict[str, str]]:
    """The page's form: where it posts and its hidden fields."""
    form = _FORM.search(page.text)
    action = form and _ACTION.search(form.group(0))
    if not action:
        raise AssertionError(f"expected a form from the provider, got {page.status_code}:\n{page.text[:2000]}")
    fields = {name: html.unescape(value) for name, value in _HIDDEN.findall(form.group(0))}
    return urljoin(str(page.url), html.unescape(action.group(1))), fields


def _origin(url: str | httpx.URL) -> tuple[str, str]:
    parts = urlsplit(str(url))
    return parts.scheme, parts.netloc


def _walk(
    client: httpx.Client, response: httpx.Response, answer: Callable[[dict[str, str]], dict[str, str]]
) -> httpx.Response:
    """Follow the provider's redirects and answer its forms until it redirects elsewhere.

    ``answer(fields)`` returns what to post for a form with these hidden fields; a form the
    page's script posts by itself is posted as it is.
    """
    provider = _origin(response.url)
    for _ in range(MAX_STEPS):
        if response.is_redirect:
            target = urljoin(str(response.url), response.headers["location"])
            if _origin(target) != provider:
                return response
            response = client.get(target, follow_redirects=False)
        elif response.status_code == 200:
            action, fields = _form_of(response)
            if SELF_POSTING not in response.text:
                fields = answer(fields)
            response = client.post(action, data=fields, follow_redirects=False)
        else:
            raise AssertionError(f"the provider answered {response.status_code}:\n{response.text[:2000]}")
    raise AssertionError(f"no redirect away from the provider after {MAX_STEPS} steps")


def sign_in_with_forms(client: httpx.Client, authorize_url: str, login: str) -> httpx.Response:
    """Sign in at the provider as ``login`` and consent; the redirect back to the client.

    The response is NOT followed: its Location is the client's redirect_uri with ``code`` and
    ``state`` (or ``error``). ``client`` keeps the provider's cookies: a second sign-in with the
    same client reuses the provider's session (no login form: ``login`` is then ignored; add
    ``prompt=login`` to the authorize URL to be asked again, and a different login then ends
    the provider's session first, as a browser's script would) and the consent already given.
    """

    def answer(fields: dict[str, str]) -> dict[str, str]:
        if fields.get("prompt") == "login":
            return {"prompt": "login", "login": login, "password": "any password"}
        if fields.get("prompt") == "consent":
            return {"prompt": "consent"}
        raise AssertionError(f"unexpected form from the provider: {sorted(fields)}")

    return _walk(client, client.get(authorize_url, follow_redirects=False), answer)


def sign_out_with_forms(client: httpx.Client, end_session_url: str) -> httpx.Response:
    """Confirm RP-initiated logout ("Yes, sign me out"); the redirect away from the provider.

    With a post_logout_redirect_uri (and an id_token_hint or client_id) that is where the
    response points, with ``state``; without one it points at the provider's own success page,
    which is returned unfollowed too.
    """
    response = client.get(end_session_url, follow_redirects=False)
    if response.status_code == 200:
        action, fields = _form_of(response)  # the confirmation, or without a session a self-posting form
        response = client.post(action, data={**fields, "logout": "yes"}, follow_redirects=False)
    if not response.is_redirect:
        raise AssertionError(f"the provider answered {response.status_code}:\n{response.text[:2000]}")
    return response
