"""The Studio Maven repository, ``/maven/studio/``: a static Maven 2 repository behind tokens.

GET and HEAD, ETag with If-None-Match, Range. Readable by the members of the project an
artifact belongs to; to anyone else a file reads as missing. Like a static repository, it
answers 401 with a Basic challenge first: Maven and Nexus send credentials only after it.
A release is there at its project's coordinates and at the reference's, ``nuxeo-studio:…``
(releases.py), which is how the reference's address ``/nuxeo/site/studio/maven/`` serves it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, Response
from sqlalchemy.orm import Session

from tokensmith.errors import NotFound
from tokensmith.identity import Identity
from tokensmith.projects import catalog, maven_repository, releases
from tokensmith.web.auth import ProjectIn, Requires
from tokensmith.web.runtime import Runtime, get_runtime, has_encoded_separators

router = APIRouter(tags=["maven"], include_in_schema=False)

CONTENT_TYPES = {
    ".pom": "application/xml",
    ".xml": "application/xml",
    ".jar": "application/java-archive",
    ".md5": "text/plain",
    ".sha1": "text/plain",
    ".sha256": "text/plain",
    ".sha512": "text/plain",
}


class RepositoryFile(FileResponse):
    # Artifacts are large and read sequentially: 1 MiB reads instead of Starlette's 64 KiB
    # take a 100 MB download from ~0.4 of nginx's throughput to about nginx's (make bench).
    chunk_size = 1024 * 1024


def file_response(request: Request, path: Path) -> Response:
    """A repository file as a static server sends it: ETag, 304, Range, HEAD."""
    stat = os.stat(path)
    etag = '"' + hashlib.md5(f"{stat.st_mtime}-{stat.st_size}".encode(), usedforsecurity=False).hexdigest() + '"'
    wanted = request.headers.get("if-none-match", "")
    if etag in [tag.strip().removeprefix("W/") for tag in wanted.split(",")] or wanted.strip() == "*":
        return Response(status_code=304, headers={"ETag": etag})
    suffix = "".join(path.suffixes[-1:])
    return RepositoryFile(
        path,
        stat_result=stat,
        media_type=CONTENT_TYPES.get(suffix, "application/octet-stream"),
        headers={"Cache-Control": "private, max-age=0, must-revalidate"},
    )


def _no_such_file(_project: str) -> NotFound:
    return NotFound("No such file in this repository.")


def project_of_file(request: Request) -> str | None:
    """The project an artifact's path belongs to (its artifactId), if it names one."""
    try:
        owner = maven_repository.owner_of(maven_repository.split_path(request.path_params.get("path", "")))
    except NotFound:
        return None  # the route answers for the path itself
    return owner[1] if owner else None


STUDIO_FILE = Requires(
    "maven:read", project=ProjectIn("path: the artifactId", read=project_of_file, hidden=_no_such_file)
)


def _authorize_studio_file(session: Session, runtime: Runtime, identity: Identity, path: str) -> Path:
    segments = maven_repository.split_path(path)
    owner = maven_repository.owner_of(segments)
    if owner is None:
        raise NotFound("No such file in this repository.")
    group_id, artifact_id = owner
    try:
        project = catalog.require_role(session, artifact_id, identity.user.id, "read")
    except NotFound:
        raise NotFound("No such file in this repository.") from None
    if group_id not in releases.group_ids(project):
        raise NotFound("No such file in this repository.")
    return maven_repository.resolve(maven_repository.studio_root(runtime.settings.data_dir), segments)


@router.api_route("/maven/studio/{path:path}", methods=["GET", "HEAD"])
async def studio_file(path: str, request: Request, identity: Annotated[Identity, Depends(STUDIO_FILE)]) -> Response:
    runtime = get_runtime(request)
    if has_encoded_separators(request):
        raise NotFound("No such file in this repository.")
    file = await runtime.run_unit(lambda session: _authorize_studio_file(session, runtime, identity, path))
    return file_response(request, file)
