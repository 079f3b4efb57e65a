"""``/docs``: the REST API's documentation, Swagger UI on ``/openapi.json``.

Swagger UI's files come from the installed Python package ``swagger-ui-bundle-v2`` (imported
as ``swagger_ui_bundle``: Swagger UI's own build, pinned in pyproject.toml; version 5, which
draws OpenAPI 3.1 documents as FastAPI writes them, where ``swagger-ui-bundle`` 1.x carries
Swagger UI 4, which does not) and are served like the site's own (web/assets.py), so the page
works on a machine with no route out; the page carries the headers of every page,
its Content-Security-Policy allowing scripts, styles and requests from this server only.
ReDoc, which loads its script and fonts from CDNs, is not served.
"""

from __future__ import annotations

from pathlib import Path

import swagger_ui_bundle
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tokensmith.web.templates import render

router = APIRouter(include_in_schema=False)

# The only files of Swagger UI the page loads, under the names the site serves them by.
SWAGGER_UI = {
    f"swagger-ui/{name}": Path(swagger_ui_bundle.swagger_ui_path) / name
    for name in ("swagger-ui-bundle.js", "swagger-ui.css")
}


@router.get("/docs")
def api_docs(request: Request) -> HTMLResponse:
    return render(request, "api_docs.html", {"openapi_url": request.app.openapi_url})
