"""The REST API under ``/api/v1``: token-authenticated, JSON in and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status

from tokensmith.audit import trail
from tokensmith.identity import Identity
from tokensmith.projects import catalog, instances
from tokensmith.tokens import lifecycle as token_lifecycle
from tokensmith.tokens import limits as token_limits
from tokensmith.tokens import listing as token_listing
from tokensmith.web.auth import Db, ProjectIn, Requires, add_deprecation_headers, declares, identify_client
from tokensmith.web.bodies import authenticated_json_body, documented, json_body
from tokensmith.web.edge import at_the_edge
from tokensmith.web.runtime import client_ip, get_runtime
from tokensmith.web.schemas import (
    AUTHENTICATED,
    AuditEventPublic,
    AuditPage,
    InstanceRegistered,
    InstanceRegistration,
    LeakReport,
    LeakReportReceived,
    Me,
    ProjectPublic,
    TokenCreated,
    TokenListed,
    TokenPublic,
    refusals,
)

router = APIRouter(prefix="/api/v1", tags=["tokens"])
# On every answer that carries a secret: no cache, shared or private, may keep it.
CARRIES_A_SECRET = {"Cache-Control": "no-store", "Pragma": "no-cache"}
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The token's id")]

# What each route needs of a token (docs/scopes.md is their table).
ANY_SCOPE = Requires(None)
API_READ = Requires("api:read")
API_WRITE = Requires("api:write")
REGISTER_INSTANCE = Requires("api:write", project=ProjectIn.body("project"))
Reader = Annotated[Identity, Depends(API_READ)]
Writer = Annotated[Identity, Depends(API_WRITE)]


@router.get("/me", response_model=Me, responses=refusals(*AUTHENTICATED))
@declares(ANY_SCOPE)
@at_the_edge
async def read_me(request: Request) -> Response:
    """Who the credential belongs to, and which token made the request."""
    # Every client checks its token here (the CLI's login, CI jobs), so this route is lean:
    # served before FastAPI's dispatch (web/edge.py), it calls the one credential extractor
    # itself, and serialises its answer once (Me.json_of) rather than have FastAPI validate
    # and encode it. response_model documents it.
    identity = await identify_client(request, ANY_SCOPE)
    answer = Response(Me.json_of(identity), media_type="application/json")
    add_deprecation_headers(answer, identity, get_runtime(request).settings)
    return answer


@router.get("/tokens", response_model=list[TokenListed], responses=refusals(*AUTHENTICATED))
def list_tokens(identity: Reader, db: Db) -> list[TokenListed]:
    """The caller's tokens that are not revoked (expired ones included), each with where it was
    used (`last_used_ips`). Never a secret."""
    rows = token_listing.list_tokens(db, identity.user.id)
    addresses = token_listing.addresses_of(db, (row.id for row in rows))
    return [TokenListed.listed(row, addresses[row.id]) for row in rows]


@router.delete(
    "/tokens/{token_id:int}", status_code=status.HTTP_204_NO_CONTENT, responses=refusals(*AUTHENTICATED, 404, 422)
)
def revoke_token(token_id: TokenId, identity: Writer, db: Db, request: Request) -> Response:
    """Revoke one of the caller's tokens. Anybody else's token is a 404."""
    token_lifecycle.revoke_token(db, token_id, identity.user.id, actor=identity.username, ip=client_ip(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/tokens/{token_id:int}/rotate",
    response_model=TokenCreated,
    status_code=201,
    responses=refusals(*AUTHENTICATED, 403, 404, 422),
)
def rotate_token(token_id: TokenId, identity: Writer, db: Db, request: Request, response: Response) -> TokenCreated:
    """A token replaces its own secret: same name, expiry and limits; the old one is revoked.
    Anybody else's id is a 404; another of your own tokens, a 403."""
    runtime = get_runtime(request)
    secret, row = token_lifecycle.rotate_token(
        db,
        runtime.keys,
        token_id,
        identity.user.id,
        prefix=runtime.settings.token_prefix,
        actor=identity.username,
        ip=client_ip(request),
        presented_token_id=identity.token.id if identity.token else None,
    )
    response.headers.update(CARRIES_A_SECRET)
    return TokenCreated(**TokenPublic.of(row).model_dump(), token=secret)


@router.post(
    "/tokens/revoke",
    response_model=LeakReportReceived,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["leaks"],
    openapi_extra=documented(LeakReport),
    responses=refusals(413, 422, 503),
)
def report_leaked_tokens(
    report: Annotated[LeakReport, json_body(LeakReport)], db: Db, request: Request
) -> LeakReportReceived:
    """Found tokens where they should not be? Send them here, no credentials needed.

    Every live one is revoked and its owner told. The answer is the same whether any of
    them existed or not.
    """
    runtime = get_runtime(request)
    token_lifecycle.revoke_reported_tokens(
        db, runtime.keys, report.tokens, prefix=runtime.settings.token_prefix, ip=client_ip(request)
    )
    return LeakReportReceived(
        message="Thank you. Every live token among those you sent is now revoked, and its owner told."
    )


@router.post(
    "/instances",
    response_model=InstanceRegistered,
    status_code=201,
    tags=["instances"],
    openapi_extra=documented(InstanceRegistration),
    responses=refusals(*AUTHENTICATED, 404, 413, 422),
)
def register_instance(
    identity: Annotated[Identity, Depends(REGISTER_INSTANCE)],
    body: Annotated[InstanceRegistration, authenticated_json_body(InstanceRegistration, REGISTER_INSTANCE)],
    db: Db,
    request: Request,
    response: Response,
) -> InstanceRegistered:
    """Register an instance of a project you can write to, as `nuxeoctl register` does.

    Answers its instance id and instance key: the credentials of the package repository
    (and of nothing else). The key is shown this once.
    """
    row, key = instances.register_instance(
        db, get_runtime(request).keys, body.project, identity.user.id, body.description, actor=identity.username
    )
    response.headers.update(CARRIES_A_SECRET)
    return InstanceRegistered(instance_id=row.id, instance_key=key, project=row.project_id, description=row.description)


@router.get("/projects", response_model=list[ProjectPublic], tags=["projects"], responses=refusals(*AUTHENTICATED))
def list_projects(identity: Reader, db: Db, request: Request) -> list[ProjectPublic]:
    """The projects you are a member of, with how to reach each (Git, Maven); with a token
    limited to some projects, only those."""
    base = get_runtime(request).settings.public_url
    listed = identity.token.projects if identity.token is not None else None
    return [
        ProjectPublic(
            id=project.id,
            role=role,
            group_id=project.group_id,
            git_url=f"{base}/git/{project.id}.git",
            maven_coordinates=f"{project.group_id}:{project.id}",
            maven_url=f"{base}/maven/studio/",
        )
        for project, role in catalog.projects_of(db, identity.user.id)
        if token_limits.opens(listed, project.id)
    ]


@router.get("/audit", response_model=AuditPage, tags=["audit"], responses=refusals(*AUTHENTICATED, 422))
def read_audit(
    identity: Reader,
    db: Db,
    limit: Annotated[int, Query(ge=1, le=trail.MAX_PAGE, description="Events per page")] = 50,
    cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
    token_id: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="Only this token's events")] = None,
) -> AuditPage:
    """Your security log: every event of your account and tokens, newest first, a page at a
    time. Each event carries its action code and its description in words."""
    events, next_cursor = trail.events_page(db, identity.user.id, limit=limit, cursor=cursor, token_id=token_id)
    return AuditPage(
        events=[AuditEventPublic(**trail.public_fields(event)) for event in events], next_cursor=next_cursor
    )
