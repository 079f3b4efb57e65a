"""The Studio release API, the reference's documented contract:
``POST /studio/v2/project/{project}/releases``."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from fastapi import Depends

from tokensmith import releases
from tokensmith.authentication import Identity
from tokensmith.web.auth import Db, ProjectIn, Requires
from tokensmith.web.bodies import authenticated_json_body, documented
from tokensmith.web.runtime import get_runtime
from tokensmith.web.schemas import AUTHENTICATED, refusals

router = APIRouter(prefix="/studio/v2", tags=["studio"])
RELEASE = Requires("api:write", project=ProjectIn.path("project_id"))


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"revision": "master", "versionName": "MINOR"}})

    revision: str = Field(min_length=1, max_length=200, description='A branch, tag or commit, like "master"')
    versionName: str = Field(  # noqa: N815  (the reference's field name)
        min_length=1, max_length=100, description='"1.2.0", "1.2.0-rc1", "MAJOR", "MINOR" or "PATCH"'
    )


class ReleaseCreated(BaseModel):
    version: str
    bundleSymbolicName: str  # noqa: N815
    mavenCoordinates: str  # noqa: N815


@router.post(
    "/project/{project_id}/releases",
    response_model=ReleaseCreated,
    status_code=201,
    openapi_extra=documented(ReleaseRequest),
    responses=refusals(*AUTHENTICATED, 403, 404, 409, 413, 422),
)
def create_release(
    project_id: Annotated[str, Path(max_length=200)],
    identity: Annotated[Identity, Depends(RELEASE)],
    asked: Annotated[ReleaseRequest, authenticated_json_body(ReleaseRequest, RELEASE)],
    request: Request,
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
