"""The floor of the token route: a bare FastAPI JSON route, nothing of Tokensmith's around it.

``make bench`` runs it beside the server, as its own process pinned to the server's CPU, under
the same uvicorn with the same options as ``tokensmith serve`` (``cli/serve.uvicorn_options``:
the httptools protocol, uvloop, no access log). Run: ``python bench/bare_app.py PORT``.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

app = FastAPI()


@app.get("/bare")
async def bare() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    from tokensmith.cli.serve import uvicorn_options

    uvicorn.run(app, **uvicorn_options("127.0.0.1", int(sys.argv[1]), access_log=False))
