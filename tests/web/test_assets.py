"""The site's static files: fingerprinted names, kept a year by caches, the old names redirected."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import Response

from tokensmith.web.assets import FOREVER, fingerprinted, unfingerprinted
from tokensmith.web.edge import at_the_edge, edge_routes

STATIC = Path(__file__).resolve().parents[2] / "src" / "tokensmith" / "web" / "static"


def linked_assets(html: str, suffix: str = ".css") -> list[str]:
    return [url for url in re.findall(r'(?:href|src)="(/static/[^"]+)"', html) if url.endswith(suffix)]


def test_pages_link_the_files_by_their_content(server):
    with server.client() as client:
        login = client.get("/login")
        (stylesheet,) = linked_assets(login.text)
        served = client.get(stylesheet)
    content = (STATIC / "style.css").read_bytes()
    assert stylesheet == f"/static/style.{hashlib.sha256(content).hexdigest()[:12]}.css"
    assert served.status_code == 200 and served.content == content
    assert served.headers["cache-control"] == FOREVER == "public, max-age=31536000, immutable"
    assert served.headers["content-type"] == "text/css; charset=utf-8"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["content-length"] == str(len(content))


def test_a_cache_that_asks_again_gets_a_304_and_head_gets_no_body(server):
    with server.client() as client:
        (stylesheet,) = linked_assets(client.get("/login").text)
        etag = client.get(stylesheet).headers["etag"]
        again = client.get(stylesheet, headers={"If-None-Match": etag})
        head = client.head(stylesheet)
    assert again.status_code == 304 and again.content == b"" and again.headers["etag"] == etag
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str((STATIC / "style.css").stat().st_size)


def test_the_site_has_an_icon_at_the_root_and_under_its_fingerprint(server):
    """Issue 18: /favicon.ico was a 404. The package's icon, linked by every page under its
    fingerprinted name and served at the root too, where browsers and tools look for it."""
    content = (STATIC / "favicon.ico").read_bytes()
    assert content[:4] == b"\x00\x00\x01\x00" and int.from_bytes(content[4:6], "little") == 3  # ICO: 16, 32, 48 px
    with server.client() as client:
        (icon,) = linked_assets(client.get("/login").text, ".ico")
        fingerprinted_icon = client.get(icon)
        at_the_root = client.get("/favicon.ico")
        again = client.get("/favicon.ico", headers={"If-None-Match": at_the_root.headers["etag"]})
        (docs_icon,) = linked_assets(client.get("/docs").text, ".ico")
    assert icon == f"/static/favicon.{hashlib.sha256(content).hexdigest()[:12]}.ico" == docs_icon
    for answer in (fingerprinted_icon, at_the_root):
        assert answer.status_code == 200 and answer.content == content
        assert answer.headers["content-type"] == "image/vnd.microsoft.icon"
    assert fingerprinted_icon.headers["cache-control"] == FOREVER
    assert at_the_root.headers["cache-control"] == "public, max-age=86400"  # its name never changes
    assert again.status_code == 304 and again.content == b""


@pytest.mark.parametrize("old", ["/static/style.css", "/static/style.0123456789ab.css"])
def test_an_old_name_is_redirected_to_the_current_one_and_not_cached(server, old):
    """The name without its hash, or with another version's (a page from an instance not yet
    upgraded): the browser is sent to the file this server has, and nothing keeps the redirect."""
    with server.client() as client:
        (stylesheet,) = linked_assets(client.get("/login").text)
        moved = client.get(old)
    assert moved.status_code == 302
    assert moved.headers["location"] == stylesheet
    assert moved.headers["cache-control"] == "no-cache"


@pytest.mark.parametrize(
    "path",
    ["/static/nothing.css", "/static/../pyproject.toml", "/static/", "/static/swagger-ui/", "/static/%2e%2e/app.py"],
)
def test_anything_else_under_static_is_a_404(server, path):
    with server.client() as client:
        missing = client.get(path)
    assert missing.status_code == 404
    assert "Nothing here." in missing.text


def test_names_and_their_fingerprints():
    assert fingerprinted("swagger-ui/swagger-ui.css", "0123456789ab") == "swagger-ui/swagger-ui.0123456789ab.css"
    assert unfingerprinted("swagger-ui/swagger-ui.0123456789ab.css") == "swagger-ui/swagger-ui.css"
    assert unfingerprinted("swagger-ui/swagger-ui-bundle.js") == "swagger-ui/swagger-ui-bundle.js"
    assert unfingerprinted("site.notahash12.js") == "site.notahash12.js"


def test_only_a_plain_get_or_post_of_a_fixed_path_is_served_at_the_edge():
    """What the edge serves is checked once, at start: a route it could not serve as FastAPI
    would (a path parameter, a dependency) fails the start instead of answering wrongly."""
    app = FastAPI()

    @app.get("/fine")
    @at_the_edge
    async def fine(request: Request) -> Response:
        return Response()

    @app.post("/posted")
    @at_the_edge
    async def posted(request: Request) -> Response:
        return Response()

    assert set(edge_routes(app)) == {("GET", "/fine"), ("POST", "/posted")}

    @app.get("/items/{item}")
    @at_the_edge
    async def item(request: Request) -> Response:
        return Response()

    with pytest.raises(TypeError, match=re.escape("/items/{item} cannot be served at the edge")):
        edge_routes(app)
