"""Rendering pages: one Jinja environment (autoescaped) and the headers every page carries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader

from tokensmith.accounts import passkeys, sessions
from tokensmith.audit import trail
from tokensmith.clock import display
from tokensmith.scopes import describe_scopes
from tokensmith.web.assets import Assets

TEMPLATE_DIR = Path(__file__).parent / "templates"
SESSION_COOKIE = "tokensmith_session"
PRESESSION_COOKIE = "tokensmith_presession"
# A sign-in in progress at the identity provider (state, nonce, PKCE verifier; signed).
PENDING_SIGN_IN_COOKIE = "tokensmith_oidc"
# The provider's ID token, sent back to it as id_token_hint at sign-out, and only there.
PROVIDER_SESSION_COOKIE = "tokensmith_idp"
# What pages.login_page sets: secrets.token_urlsafe(24).
PRESESSION_SHAPE = re.compile(r"[A-Za-z0-9_-]{32}")

# (X-Content-Type-Options goes on every answer of the server: web/edge.py.)
PAGE_HEADERS = {
    # Pages can show a token once: no cache may keep them.
    "Cache-Control": "no-store",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}

_environment = Environment(loader=FileSystemLoader(TEMPLATE_DIR), autoescape=True)
_environment.filters["when"] = display
_environment.filters["describe_event"] = trail.describe
_environment.filters["describe_scopes"] = describe_scopes
_environment.filters["revoke_reason"] = lambda reason: trail.REVOKE_REASONS.get(reason or "", "")
_environment.tests["attention"] = trail.needs_attention
_environment.tests["with_address"] = trail.shows_address
# The sign-in page offers "Sign in with a passkey" where the public URL allows passkeys.
_environment.globals["passkey_party"] = lambda settings: passkeys.relying_party(settings.public_url)
templates = Jinja2Templates(env=_environment)


def use_assets(assets: Assets) -> None:
    """Pages name static files only through ``asset_url("style.css")``: their fingerprinted
    URLs, computed once at start (web/assets.py)."""
    _environment.globals["asset_url"] = assets.url


def csrf_binding(request: Request) -> str:
    """What a page's CSRF token is bound to: the live session the request came with (resolved by
    web/auth.py), else the pre-sign-in nonce cookie. Never a session cookie alone: a session
    ended on the server (a new password, a disabled account, SCIM), or a cookie someone planted,
    would bind the sign-in form to a secret that POST /login does not check, and every sign-in
    would be refused until the person cleared their cookies."""
    if getattr(request.state, "browser_session", None) is not None:
        return request.cookies.get(SESSION_COOKIE, "")
    return getattr(request.state, "presession", None) or presession_of(request) or ""


def presession_of(request: Request) -> str | None:
    """The pre-sign-in nonce cookie, if it is one this server could have set (a planted empty or
    odd value is not: the sign-in page then sets a new one)."""
    value = request.cookies.get(PRESESSION_COOKIE, "")
    return value if PRESESSION_SHAPE.fullmatch(value) else None


def render(
    request: Request,
    name: str,
    context: dict[str, Any] | None = None,
    *,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> HTMLResponse:
    runtime = request.app.state.runtime
    binding = csrf_binding(request)
    page_context = {
        "identity": getattr(request.state, "identity", None),
        "csrf_token": sessions.csrf_token(runtime.keys, binding) if binding else "",
        "settings": runtime.settings,
        **(context or {}),
    }
    page_headers = PAGE_HEADERS
    if runtime.identity_provider is not None:
        # Signing out redirects the form's submission on to the provider: allow its origin.
        origins = " ".join(sorted(runtime.identity_provider.origins()))
        policy = PAGE_HEADERS["Content-Security-Policy"].replace("form-action 'self'", f"form-action 'self' {origins}")
        page_headers = {**PAGE_HEADERS, "Content-Security-Policy": policy}
    return templates.TemplateResponse(
        request, name, page_context, status_code=status, headers={**page_headers, **(headers or {})}
    )
