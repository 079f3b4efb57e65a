"""The Studio API, as the reference's tools call it: ``POST /studio/v2/project/{project}/releases``
(its documented contract), and the project's ``administrativeInformation`` and workspace
(``ws.maven``, ``ws.registries``) that its command-line tool reads. Also served at the
reference's address, ``/nuxeo/site/studio/v2/…`` (web/nuxeo.py)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from tokensmith.identity import Identity
from tokensmith.projects import catalog, releases
from tokensmith.web.auth import Db, ProjectIn, Requires
from tokensmith.web.bodies import authenticated_json_body, documented
from tokensmith.web.runtime import get_runtime
from tokensmith.web.schemas import AUTHENTICATED, refusals

router = APIRouter(prefix="/studio/v2", tags=["studio"])
RELEASE = Requires("api:write", project=ProjectIn.path("project_id"))
READ_PROJECT = Requires("api:read", project=ProjectIn.path("project_id"))
ProjectId = Annotated[str, Path(max_length=200)]
# The registries of a Studio designer's workspace, as the reference's tool reads them. Tokensmith
# models no designer: each list is empty (the tool then writes a constants class with none).
REGISTRIES = (
    "documentTypes",
    "schemas",
    "facets",
    "lifeCycles",
    "operationChains",
    "operationScriptings",
    "pageProviders",
)


class ReleaseRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"revision": "master", "versionName": "MINOR"}})

    revision: str = Field(min_length=1, max_length=200, description='A branch, tag or commit, like "master"')
    versionName: str = Field(
        min_length=1, max_length=100, description='"1.2.0", "1.2.0-rc1", "MAJOR", "MINOR" or "PATCH"'
    )


class ReleaseCreated(BaseModel):
    version: str
    bundleSymbolicName: str
    mavenCoordinates: str


@router.post(
    "/project/{project_id}/releases",
    response_model=ReleaseCreated,
    status_code=201,
    openapi_extra=documented(ReleaseRequest),
    responses=refusals(*AUTHENTICATED, 403, 404, 409, 413, 422),
)
def create_release(
    project_id: ProjectId,
    identity: Annotated[Identity, Depends(RELEASE)],
    asked: Annotated[ReleaseRequest, authenticated_json_body(ReleaseRequest, RELEASE)],
    request: Request,
    db: Db,
) -> JSONResponse:
    """Release a revision of the project to the Studio Maven repository (needs write access)."""
    runtime = get_runtime(request)
    published = releases.release(
        db,
        runtime.settings.data_dir,
        project_id,
        identity.user.id,
        revision=asked.revision,
        version_name=asked.versionName,
        actor=identity.username,
    )
    return JSONResponse(
        ReleaseCreated(
            version=published.version,
            bundleSymbolicName=published.bundle_symbolic_name,
            mavenCoordinates=published.maven_coordinates,
        ).model_dump(),
        status_code=201,
    )


class ProjectInformation(BaseModel):
    symbolicName: str
    bundleSymbolicName: str
    role: str = Field(description='"read" or "write"')
    releases: list[str] = Field(description="Its released versions, oldest first")


class MavenCoordinates(BaseModel):
    groupId: str
    artifactId: str
    version: str


@router.get(
    "/project/{project_id}/administrativeInformation",
    response_model=ProjectInformation,
    responses=refusals(*AUTHENTICATED, 404),
)
def administrative_information(
    project_id: ProjectId, identity: Annotated[Identity, Depends(READ_PROJECT)], db: Db
) -> ProjectInformation:
    """The project, if you may read it: its name, your role, its releases."""
    project = catalog.require_role(db, project_id, identity.user.id, "read")
    return ProjectInformation(
        symbolicName=project.id,
        bundleSymbolicName=releases.bundle_symbolic_name(project.id),
        role=catalog.role_of(db, project.id, identity.user.id) or "read",
        releases=releases.released_versions(db, project.id),
    )


@router.get(
    "/project/{project_id}/workspace/ws.maven", response_model=MavenCoordinates, responses=refusals(*AUTHENTICATED, 404)
)
def workspace_maven(
    project_id: ProjectId, identity: Annotated[Identity, Depends(READ_PROJECT)], db: Db
) -> MavenCoordinates:
    """The reference's Maven coordinates of the project's latest release (groupId nuxeo-studio),
    which the Studio Maven repository serves. Before the first release, the version is the
    reference's name for a project's workspace, 0.0.0-SNAPSHOT: its tool then still finishes
    linking (it stops, silently, on anything but a 200), and sets the version of the first
    release it makes; Maven finds the project from then on."""
    project = catalog.require_role(db, project_id, identity.user.id, "read")
    version = releases.latest_release(db, project.id) or releases.WORKSPACE_VERSION
    coordinates = releases.reference_coordinates(project.id, version)
    return MavenCoordinates(groupId=coordinates.group_id, artifactId=coordinates.artifact_id, version=version)


@router.get("/project/{project_id}/workspace/ws.registries", responses=refusals(*AUTHENTICATED, 404))
def workspace_registries(
    project_id: ProjectId, identity: Annotated[Identity, Depends(READ_PROJECT)], db: Db
) -> dict[str, list[Any]]:
    """The project's registries (document types, schemas, operation chains…): all empty, since
    Tokensmith models no Studio designer."""
    catalog.require_role(db, project_id, identity.user.id, "read")
    return {registry: [] for registry in REGISTRIES}
