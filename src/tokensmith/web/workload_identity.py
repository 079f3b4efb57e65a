"""Workload identity over HTTP: the exchange of a CI job's ID token, the audience to ask for, a
project's trusted publishers (the API, and the Trusted publishers section of My Applications).

The exchange takes no credential: the ID token is the credential. It is served before FastAPI's
dispatch (web/edge.py; the route stays declared for the OpenAPI document and any other method):
the body read within the application's limit and validated as the model says, the ID token
checked on the event loop when this process holds its issuer's keys, and written with the other
exchanges of the moment in one unit of work in a thread (tokens/exchange_batches.py). Otherwise —
the keys not held, any refusal — it runs as one unit of work in a thread
(tokens/workload_identity.py); when the issuer's keys are not in this process yet, they are
fetched in a thread of their own, holding no connection to the store, and the unit runs again.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Form, Path, Request, Response, status
from fastapi.types import DecoratedCallable
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from tokensmith import metrics
from tokensmith.clock import utcnow
from tokensmith.errors import AuthenticationFailed, Conflict, InvalidInput, IssuerUnavailable
from tokensmith.identity import Identity
from tokensmith.projects import publishers as trusted_publishers
from tokensmith.store.models import PersonalToken, TrustedPublisher
from tokensmith.tokens import ci_tokens, exchange_batches, workload_identity
from tokensmith.tokens.workload_identity import Exchanged, KeysNeeded
from tokensmith.web import pages
from tokensmith.web.api import CARRIES_A_SECRET
from tokensmith.web.auth import BrowserIdentity, Db, ProjectIn, Requires
from tokensmith.web.bodies import authenticated_json_body, documented, read_json
from tokensmith.web.edge import at_the_edge
from tokensmith.web.reauthentication import recent_sign_in
from tokensmith.web.runtime import Runtime, client_ip, get_runtime
from tokensmith.web.schemas import AUTHENTICATED, refusals

router = APIRouter(prefix="/api/v1", tags=["workload identity"])
pages_router = APIRouter(include_in_schema=False)

READ_PUBLISHERS = Requires("api:read", project=ProjectIn.path("project"))
WRITE_PUBLISHERS = Requires("api:write", project=ProjectIn.path("project"))
ProjectId = Annotated[str, Path(min_length=1, max_length=64, description="The project id, like acme-contracts")]
PublisherId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The trusted publisher's id")]
TokenId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The token's id")]


# --- what the API reads and writes ------------------------------------------------------------------


class Audience(BaseModel):
    audience: str = Field(description="The aud a CI job asks its platform's ID token for")


class ExchangeRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"token": "eyJhbGciOiJSUzI1NiIs…"}})

    # Within the 64 KiB a body may have (a longer one would be a 413, which the schema cannot say);
    # past the 8,192 characters of an ID token, the exchange refuses it as malformed, in words.
    token: str = Field(max_length=32 * 1024, description="The CI job's OpenID Connect ID token")
    project: str | None = Field(
        default=None, max_length=64, description="The project wanted, when the token matches publishers of several"
    )


class ExchangeAnswer(BaseModel):
    token: str = Field(description="A token of the project, for Basic (with username) or Bearer. Shown this once.")
    username: str = Field(description="Whose token it is: the project's CI account")
    project: str
    scopes: list[str]
    expires_at: datetime


class PublisherCreate(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "issuer": trusted_publishers.GITHUB_ACTIONS,
                "claims": {"repository": "acme/contracts", "ref": "refs/heads/main"},
                "scopes": ["git:write", "maven:read"],
                "name": "Release from main",
            }
        }
    )

    issuer: str = Field(max_length=trusted_publishers.MAX_ISSUER, description="The issuer's URL, as iss says it")
    claims: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=255)]] = Field(
        max_length=trusted_publishers.MAX_CLAIMS, description="The claims an ID token must carry, each exactly"
    )
    scopes: list[Annotated[str, Field(max_length=40)]] = Field(
        default=list(trusted_publishers.DEFAULT_SCOPES), max_length=10, description="What its tokens may do"
    )
    name: str | None = Field(default=None, max_length=trusted_publishers.MAX_NAME)


class CiTokenPublic(BaseModel):
    id: int
    name: str
    hint: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None
    last_used_ip: str | None

    @classmethod
    def of(cls, row: PersonalToken) -> CiTokenPublic:
        return cls(
            id=row.id,
            name=row.name,
            hint=row.hint,
            scopes=list(row.scopes),
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
            last_used_ip=row.last_used_ip,
        )


class PublisherPublic(BaseModel):
    id: int
    project: str
    name: str
    issuer: str
    claims: dict[str, str]
    scopes: list[str]
    username: str = Field(description="The project's CI account, whose tokens it gives")
    created_at: datetime
    created_by: str
    tokens: list[CiTokenPublic] = Field(description="The live tokens it gave (revoke them here)")

    @classmethod
    def of(cls, publisher: TrustedPublisher, tokens: list[PersonalToken]) -> PublisherPublic:
        return cls(
            id=publisher.id,
            project=publisher.project_id,
            name=publisher.name,
            issuer=publisher.issuer,
            claims=dict(publisher.claims),
            scopes=list(publisher.scopes),
            username=trusted_publishers.ci_username(publisher.project_id),
            created_at=publisher.created_at,
            created_by=publisher.created_by,
            tokens=[CiTokenPublic.of(row) for row in tokens],
        )


# --- the exchange -------------------------------------------------------------------------------------


@router.get("/oidc/audience", response_model=Audience)
def read_audience(request: Request) -> Audience:
    """The audience (``aud``) a CI job asks its platform's OpenID Connect ID token for."""
    return Audience(audience=get_runtime(request).settings.workload_audience)


@router.post(
    "/oidc/exchange",
    response_model=ExchangeAnswer,
    status_code=201,
    openapi_extra=documented(ExchangeRequest),
    responses=refusals(401, 403, 413, 422, 503),
)
@at_the_edge
async def exchange_id_token(request: Request) -> Response:
    """A CI job's OpenID Connect ID token for a short-lived token of the project whose trusted
    publisher it matches; no other credential. Refusals are 401 with a code: invalid_signature,
    wrong_audience, expired, replayed, no_matching_publisher, malformed. An issuer that cannot be
    reached is 503."""
    # Served before FastAPI's dispatch (web/edge.py): the body read and validated here, as
    # json_body would; openapi_extra documents it.
    body = await read_json(request, ExchangeRequest)
    runtime = get_runtime(request)
    try:
        done = await _exchange(runtime, body, client_ip(request))
    except AuthenticationFailed as error:
        metrics.count_authentication("id_token", error.reason)
        raise
    metrics.count_authentication("id_token", "ok")
    # Written by orjson straight from the values (response_model documents it): FastAPI's
    # validation and encoding of the model cost more than a token check does.
    answer = {
        "token": done.secret,
        "username": done.username,
        "project": done.project,
        "scopes": list(done.scopes),
        "expires_at": done.expires_at,
    }
    return Response(orjson.dumps(answer, option=orjson.OPT_UTC_Z), 201, CARRIES_A_SECRET, "application/json")


async def _exchange(runtime: Runtime, body: ExchangeRequest, ip: str | None) -> Exchanged:
    settings = runtime.settings
    # The issuer's keys held: checked here, on the loop (tens of µs), then written in a batch.
    ready = exchange_batches.ready(
        body.token,
        directory=runtime.issuers,
        audience=settings.workload_audience,
        project=body.project,
        ip=ip,
        now=utcnow(),
    )
    if ready is not None:
        return await runtime.exchanges.exchange(ready)

    def unit(fetched: bool) -> Callable[[Session], Exchanged]:
        return lambda session: workload_identity.exchange(
            session,
            runtime.keys,
            body.token,
            directory=runtime.issuers,
            audience=settings.workload_audience,
            prefix=settings.token_prefix,
            minutes=settings.oidc_token_minutes,
            project=body.project,
            fetched=fetched,
            ip=ip,
        )

    try:
        return await runtime.run_unit(unit(fetched=False))
    except KeysNeeded as needed:
        await run_in_threadpool(runtime.issuers.refresh, needed.issuer, needed.key_id)
    try:
        return await runtime.run_unit(unit(fetched=True))
    except KeysNeeded as needed:  # fetched a moment ago, and not kept: nothing to verify with
        raise IssuerUnavailable(
            f"The keys of {needed.issuer[:255]} could not be kept just now: try again in a moment."
        ) from None


# --- a project's trusted publishers, through the API ---------------------------------------------


def _listed(db: Session, project: str) -> list[PublisherPublic]:
    found = ci_tokens.overview(db, project, events=0)
    return [PublisherPublic.of(publisher, found.tokens.get(publisher.id, [])) for publisher in found.publishers]


@router.get(
    "/projects/{project}/publishers",
    response_model=list[PublisherPublic],
    tags=["projects"],
    responses=refusals(*AUTHENTICATED, 404, 422),
)
def list_publishers(
    project: ProjectId, identity: Annotated[Identity, Depends(READ_PUBLISHERS)], db: Db
) -> list[PublisherPublic]:
    """The project's trusted publishers, each with the live tokens it gave (write members only)."""
    trusted_publishers.require_manager(db, project, identity.user.id)
    return _listed(db, project)


@router.post(
    "/projects/{project}/publishers",
    response_model=PublisherPublic,
    status_code=201,
    tags=["projects"],
    openapi_extra=documented(PublisherCreate),
    responses=refusals(*AUTHENTICATED, 404, 409, 413, 422),
)
def add_publisher(
    project: ProjectId,
    identity: Annotated[Identity, Depends(WRITE_PUBLISHERS)],
    body: Annotated[PublisherCreate, authenticated_json_body(PublisherCreate, WRITE_PUBLISHERS)],
    db: Db,
) -> PublisherPublic:
    """Trust a CI's ID tokens that carry these claims, exactly: they get a short-lived token of
    this project with these scopes (default git:read, maven:read)."""
    trusted_publishers.require_manager(db, project, identity.user.id)
    publisher = trusted_publishers.add_publisher(
        db, project, issuer=body.issuer, claims=body.claims, scopes=body.scopes, name=body.name, actor=identity.username
    )
    return PublisherPublic.of(publisher, [])


def _deleting(path: str) -> Callable[[DecoratedCallable], DecoratedCallable]:
    """A DELETE of a project's publishers' routes: 204, or the refusals they share."""
    return router.delete(
        path, status_code=status.HTTP_204_NO_CONTENT, tags=["projects"], responses=refusals(*AUTHENTICATED, 404, 422)
    )


@_deleting("/projects/{project}/publishers/{publisher_id}")
def remove_publisher(
    project: ProjectId,
    publisher_id: PublisherId,
    identity: Annotated[Identity, Depends(WRITE_PUBLISHERS)],
    db: Db,
    request: Request,
) -> Response:
    """Remove a trusted publisher: every live token it gave is revoked with it."""
    trusted_publishers.require_manager(db, project, identity.user.id)
    ci_tokens.remove_publisher(db, publisher_id, project_id=project, actor=identity.username, ip=client_ip(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@_deleting("/projects/{project}/publishers/{publisher_id}/tokens/{token_id}")
def revoke_ci_token(
    project: ProjectId,
    publisher_id: PublisherId,
    token_id: TokenId,
    identity: Annotated[Identity, Depends(WRITE_PUBLISHERS)],
    db: Db,
    request: Request,
) -> Response:
    """Revoke a token a trusted publisher of the project gave: refused from the next request."""
    trusted_publishers.require_manager(db, project, identity.user.id)
    ci_tokens.revoke_ci_token(db, project, publisher_id, token_id, actor=identity.username, ip=client_ip(request))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# --- the Trusted publishers section of My Applications --------------------------------------------

FormText = Annotated[str, Form(max_length=4096)]
FormList = Annotated[list[Annotated[str, Field(max_length=100)]], Form(max_length=20)]
ISSUER_CHOICES = {"github": trusted_publishers.GITHUB_ACTIONS, "gitlab": trusted_publishers.GITLAB_COM}


def chosen_issuer(choice: str, issuer: str) -> str:
    if choice in ISSUER_CHOICES:
        return ISSUER_CHOICES[choice]
    if choice == "other":
        return issuer
    raise InvalidInput("Choose the CI's issuer: GitHub Actions, GitLab.com, or another one by its URL.")


@pages_router.post("/applications/{project}/publishers")
def add_publisher_page(
    project: ProjectId,
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    issuer_choice: FormText = "github",
    issuer: FormText = "",
    claims: FormText = "",
    scopes: FormList = [],  # noqa: B006  (FastAPI copies it)
    name: FormText = "",
    csrf_token: FormText = "",
    reauth_password: FormText = "",
) -> Response:
    """Add a trusted publisher from My Applications: a recent sign-in first, as for a token."""
    pages.check_csrf(request, csrf_token)
    trusted_publishers.require_manager(db, project, identity.user.id)
    form = {"issuer_choice": issuer_choice, "issuer": issuer, "claims": claims, "scopes": scopes, "name": name}
    posted = [(key, str(value)) for key, value in form.items() if key != "scopes"] + [("scopes", s) for s in scopes]
    asked = recent_sign_in(
        request,
        db,
        identity,
        what="Adding a trusted publisher",
        back="/applications",
        fields=posted,
        password=reauth_password,
    )
    if asked is not None:
        return asked
    try:
        added = trusted_publishers.add_publisher(
            db,
            project,
            issuer=chosen_issuer(issuer_choice, issuer),
            claims=trusted_publishers.parse_claims(claims.splitlines()),
            scopes=scopes,
            name=name or None,
            actor=identity.username,
        )
    except (InvalidInput, Conflict) as error:
        failed = {"project": project, "message": error.message, "form": form}
        code = 409 if isinstance(error, Conflict) else 422
        return pages.applications_page(request, db, identity, status=code, publisher_error=failed)
    db.commit()  # before the page is drawn, as for a token
    notice = f"Trusted publisher “{added.name}” added: its CI jobs now get tokens of {project}."
    return pages.applications_page(request, db, identity, status=201, publisher_notice=(project, notice))


@pages_router.post("/applications/{project}/publishers/{publisher_id}/remove")
def remove_publisher_page(
    project: ProjectId,
    publisher_id: PublisherId,
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    csrf_token: FormText = "",
) -> Response:
    pages.check_csrf(request, csrf_token)
    trusted_publishers.require_manager(db, project, identity.user.id)
    removed, revoked = ci_tokens.remove_publisher(
        db, publisher_id, project_id=project, actor=identity.username, ip=client_ip(request)
    )
    db.commit()
    notice = f"Trusted publisher “{removed.name}” removed; {revoked} live token(s) it had given revoked."
    return pages.applications_page(request, db, identity, publisher_notice=(project, notice))


@pages_router.post("/applications/{project}/publishers/{publisher_id}/tokens/{token_id}/revoke")
def revoke_ci_token_page(
    project: ProjectId,
    publisher_id: PublisherId,
    token_id: TokenId,
    request: Request,
    db: Db,
    identity: BrowserIdentity,
    csrf_token: FormText = "",
) -> Response:
    pages.check_csrf(request, csrf_token)
    trusted_publishers.require_manager(db, project, identity.user.id)
    row = ci_tokens.revoke_ci_token(db, project, publisher_id, token_id, actor=identity.username, ip=client_ip(request))
    db.commit()
    notice = f"The CI token “{row.name}” ({row.hint}) was revoked: the job holding it is refused from now on."
    return pages.applications_page(request, db, identity, publisher_notice=(project, notice))
