"""``/docs``: the REST API's documentation, Swagger UI on ``/openapi.json``.

Swagger UI's files come with the package (web/static/swagger-ui/, vendored from npm's
swagger-ui-dist by ``make swagger-ui``) and are served like the site's own (web/assets.py), so
the page works on a machine with no route out; the page carries the headers of every page,
its Content-Security-Policy allowing scripts, styles and requests from this server only.
ReDoc, which loads its script and fonts from CDNs, is not served.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from tokensmith.web.templates import render

router = APIRouter(include_in_schema=False)


@router.get("/docs")
def api_docs(request: Request) -> HTMLResponse:
    return render(request, "api_docs.html", {"openapi_url": request.app.openapi_url})
