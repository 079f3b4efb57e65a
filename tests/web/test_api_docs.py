"""/docs on a machine with no route out: Swagger UI from the package, in a real browser whose
every request to anywhere but this server is recorded and refused."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Route, expect

from tests.support.servers import LiveServer
from tokensmith.web.templates import PAGE_HEADERS

pytestmark = pytest.mark.browser


@pytest.fixture
def offline(chromium: Browser, server: LiveServer) -> Iterator[tuple[BrowserContext, list[str]]]:
    """A browser profile in which only 127.0.0.1 answers: anything else is aborted, and noted."""
    context = chromium.new_context(base_url=server.base_url)
    context.set_default_timeout(15_000)
    elsewhere: list[str] = []

    def only_this_server(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    context.route("**/*", only_this_server)
    yield context, elsewhere
    context.close()


def test_docs_render_every_operation_with_no_route_out(offline):
    context, elsewhere = offline
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    answer = page.goto("/docs")
    assert answer is not None and answer.status == 200
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Tokensmith")
    # The operations, as Swagger UI draws them from /openapi.json.
    expect(page.locator(".opblock-summary-path", has_text=re.compile(r"^/api/v1/me$"))).to_be_visible()
    for path in ("/api/v1/tokens", "/api/v1/tokens/revoke", "/healthz", "/studio/v2/project/{project_id}/releases"):
        expect(page.locator(f'.opblock-summary-path[data-path="{path}"]').first).to_be_attached()
    # An operation opens and shows its answers.
    page.locator(".opblock-summary-path", has_text=re.compile(r"^/api/v1/me$")).click()
    expect(page.locator(".opblock-body .responses-table").first).to_be_visible()
    assert elsewhere == []
    # No script, style or request was refused by the page's own policy (CSP violations are console errors).
    assert [problem for problem in problems if "Content Security Policy" in problem] == []
    assert problems == []


def test_docs_carry_the_headers_of_every_page(server):
    with server.client() as client:
        docs = client.get("/docs")
        login = client.get("/login")
    assert docs.status_code == 200
    for name, value in PAGE_HEADERS.items():
        assert docs.headers[name] == value == login.headers[name]
    assert "cdn" not in docs.text and "https://" not in docs.text
    # Swagger UI's files are the package's own, immutable under their fingerprinted names.
    scripts = re.findall(r'(?:src|href)="(/static/[^"]+)"', docs.text)
    assert any("swagger-ui-bundle." in url for url in scripts) and any("swagger-ui." in url for url in scripts)
    with server.client() as client:
        for url in scripts:
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"


def test_redoc_is_not_served(server):
    """ReDoc would load its script and fonts from CDNs: it is not offered at all."""
    with server.client() as client:
        assert client.get("/redoc").status_code == 404
        assert client.get("/docs/oauth2-redirect").status_code == 404
