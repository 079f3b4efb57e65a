"""The site's static files (CSS, JS, and Swagger UI's for /docs), under names that carry a hash
of their content, kept for a year by every cache.

At start every file under ``static/`` (and Swagger UI's two files, from the installed
``swagger-ui-bundle-v2`` package: web/api_docs.py) is read once, hashed, and kept in memory with its
headers: ``/static/style.css`` is served as ``/static/style.<hash>.css``, whose content can
never change, so browsers and proxies keep it (``Cache-Control: public, max-age=31536000,
immutable``) and never ask again. Templates name files only through ``asset_url``. A name
without its hash, or with the hash of another version (a page of another instance during a
rolling upgrade), is redirected to the current one, never cached; any other name is a 404.

``/favicon.ico``, which browsers and tools ask the site's root for whatever a page links to, is
the same file as ``/static/favicon.<hash>.ico``, kept for a day under its fixed name.
"""

from __future__ import annotations

import hashlib
import mimetypes
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

PREFIX = "/static/"
HASH_LENGTH = 12  # hex digits of SHA-256: 48 bits, plenty to tell versions of one file apart
FOREVER = "public, max-age=31536000, immutable"
TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
    ".ico": "image/vnd.microsoft.icon",
}
# Files asked for at the root under names that never change: served as they are, kept a day.
AT_THE_ROOT = {"/favicon.ico": "favicon.ico"}
A_DAY = "public, max-age=86400"


def fingerprinted(name: str, digest: str) -> str:
    """``swagger-ui/swagger-ui.css`` -> ``swagger-ui/swagger-ui.<hash>.css``."""
    path = PurePosixPath(name)
    return str(path.with_name(f"{path.stem}.{digest}{path.suffix}"))


def unfingerprinted(name: str) -> str:
    """The file a requested name stands for, whatever hash (or none) it carries."""
    path = PurePosixPath(name)
    stem, dot, maybe_hash = path.stem.rpartition(".")
    if dot and len(maybe_hash) == HASH_LENGTH and all(c in "0123456789abcdef" for c in maybe_hash):
        return str(path.with_name(stem + path.suffix))
    return name


@dataclass(frozen=True)
class Asset:
    url: str
    etag: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes


class Assets:
    """Every file of a directory, and the files ``more`` names (served name -> file: another
    package's), read once, served from memory under their fingerprinted names."""

    def __init__(self, directory: Path, more: Mapping[str, Path] | None = None) -> None:
        self.by_name: dict[str, Asset] = {}
        self.by_url: dict[str, Asset] = {}
        files = {path.relative_to(directory).as_posix(): path for path in _files(directory)}
        for name, path in sorted({**files, **(more or {})}.items()):
            body = path.read_bytes()
            digest = hashlib.sha256(body).hexdigest()[:HASH_LENGTH]
            url = PREFIX + fingerprinted(name, digest)
            kind = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            etag = f'"{digest}"'.encode()
            asset = Asset(
                url,
                etag,
                [
                    (b"content-type", kind.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", FOREVER.encode()),
                    (b"etag", etag),  # (and nosniff, as on every answer: web/edge.py)
                ],
                body,
            )
            self.by_name[name] = asset
            self.by_url[url] = asset

    def url(self, name: str) -> str:
        """Where a page finds ``name`` (a path under static/): the only way templates name one."""
        return self.by_name[name].url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one request under /static/; the errors (405, 404) are raised for the caller
        to answer in the site's own words."""
        if scope["method"] not in ("GET", "HEAD"):
            raise HTTPException(status_code=405, headers={"Allow": "GET, HEAD"})
        path = scope["path"]
        if path in AT_THE_ROOT:
            await self._at_the_root(self.by_name[AT_THE_ROOT[path]], scope, send)
            return
        asset = self.by_url.get(path)
        if asset is None:
            current = self.by_name.get(unfingerprinted(path.removeprefix(PREFIX)))
            if current is None:
                raise HTTPException(status_code=404)
            await _send(
                send,
                302,
                [(b"location", current.url.encode()), (b"cache-control", b"no-cache"), (b"content-length", b"0")],
                b"",
            )
            return
        if _header(scope, b"if-none-match") == asset.etag:
            await _send(send, 304, [(b"cache-control", FOREVER.encode()), (b"etag", asset.etag)], b"")
            return
        await _send(send, 200, asset.headers, b"" if scope["method"] == "HEAD" else asset.body)

    @staticmethod
    async def _at_the_root(asset: Asset, scope: Scope, send: Send) -> None:
        headers = [(name, A_DAY.encode() if name == b"cache-control" else value) for name, value in asset.headers]
        if _header(scope, b"if-none-match") == asset.etag:
            await _send(send, 304, [(b"cache-control", A_DAY.encode()), (b"etag", asset.etag)], b"")
            return
        await _send(send, 200, headers, b"" if scope["method"] == "HEAD" else asset.body)


def _files(directory: Path) -> Iterator[Path]:
    return (path for path in directory.rglob("*") if path.is_file() and not path.name.startswith("."))


def _header(scope: Scope, name: bytes) -> bytes | None:
    return next((value for key, value in scope["headers"] if key == name), None)


async def _send(send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
