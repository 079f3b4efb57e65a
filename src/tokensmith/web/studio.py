"""The Studio release API, the reference's documented contract:
``POST /studio/v2/project/{project}/releases``."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, ValidationError

from tokensmith import releases
from tokensmith.errors import InvalidInput
from tokensmith.web.auth import ClientIdentity, Db
from tokensmith.web.runtime import get_runtime

router = APIRouter(prefix="/studio/v2", tags=["studio"])
MAX_BODY = 16 * 1024


class ReleaseRequest(BaseModel):
    revision: str = Field(min_length=1, max_length=200, description='A branch, tag or commit, like "master"')
    versionName: str = Field(  # noqa: N815  (the reference's field name)
        min_length=1, max_length=100, description='"1.2.0", "1.2.0-rc1", "MAJOR", "MINOR" or "PATCH"'
    )


class ReleaseCreated(BaseModel):
    version: str
    bundleSymbolicName: str  # noqa: N815
    mavenCoordinates: str  # noqa: N815


async def read_release_request(request: Request) -> ReleaseRequest:
    """The body, or a 422 that says what is wrong with it in words."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise InvalidInput("The release request is too large.")
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise InvalidInput(
            'The body must be JSON like {"revision": "master", "versionName": "MINOR"}.'
        ) from None
    try:
        return ReleaseRequest.model_validate(data, strict=True)
    except ValidationError as error:
        fields = ", ".join(".".join(map(str, problem["loc"])) or "body" for problem in error.errors())
        raise InvalidInput(
            f'The release request is not of the right shape ({fields}): send {{"revision": "master", '
            '"versionName": "1.2.0" | "MAJOR" | "MINOR" | "PATCH"}.'
        ) from None


@router.post(
    "/project/{project_id}/releases",
    response_model=ReleaseCreated,
    status_code=201,
    openapi_extra={"requestBody": {"content": {"application/json": {"schema": ReleaseRequest.model_json_schema()}}}},
)
def create_release(
    project_id: Annotated[str, Path(max_length=200)],
    asked: Annotated[ReleaseRequest, Depends(read_release_request)],
    request: Request,
    identity: ClientIdentity,
    db: Db,
) -> JSONResponse:
    """Release a revision of the project to the Studio Maven repository (needs write access)."""
    runtime = get_runtime(request)
    published = releases.release(
        db, runtime.settings.data_dir, project_id, identity.user.id,
        revision=asked.revision, version_name=asked.versionName, actor=identity.username,
    )
    return JSONResponse(ReleaseCreated(
        version=published.version, bundleSymbolicName=published.bundle_symbolic_name,
        mavenCoordinates=published.maven_coordinates,
    ).model_dump(), status_code=201)
