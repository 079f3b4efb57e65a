"""SCIM 2.0 provisioning at ``/scim/v2`` (RFC 7644), as Okta and Microsoft Entra ID call it.

One credential opens it: the provisioning secret ``TOKENSMITH_SCIM_TOKEN`` as a Bearer token.
A personal access token or a password never does. Every answer, refusals included, is
``application/scim+json``; errors are RFC 7644 §3.12 documents. Provisioning clients read
nothing else, so this router answers its own errors (``ScimRoute``) rather than through
``web/errors.py``, and runs each request's store work as one unit of work inside the route,
where a failed commit still becomes a SCIM answer.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tokensmith import metrics
from tokensmith.errors import StoreUnavailable
from tokensmith.scim import protocol, provisioning, resources
from tokensmith.scim.protocol import ScimError
from tokensmith.web.auth import presents_bearer_secret
from tokensmith.web.bodies import LimitExceeded
from tokensmith.web.runtime import client_ip, get_runtime

log = logging.getLogger("tokensmith.scim")

MEDIA_TYPE = "application/scim+json"
BODY_TYPES = ("application/scim+json", "application/json")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tokensmith-scim"'}
ENDPOINTS = ("Users", "ServiceProviderConfig", "ResourceTypes", "Schemas")
READ = ["GET", "HEAD"]  # HEAD wherever GET (RFC 9110 §9.3.2): the same answer, without its body
T = TypeVar("T")


def scim_response(document: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(document, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def error_response(error: ScimError, headers: dict[str, str] | None = None) -> Response:
    headers = {**(CHALLENGE if error.status == 401 else {}), **(headers or {})}
    if error.status == 503:
        headers["Retry-After"] = "5"
    return scim_response(error.document(), error.status, headers)


class ScimRoute(APIRoute):
    """A route whose every failure, whatever raised it, is answered as a SCIM error document,
    and never with a traceback."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handle(request)
            except ScimError as error:
                return error_response(error)
            except LimitExceeded as error:  # web/bodies.BodyLimit: the app's limit, 64 KiB
                return error_response(ScimError(413, None, f"The body is larger than {error.limit // 1024} KiB."))
            except StoreUnavailable as error:
                log.warning(
                    "store unavailable on %s %s: %s", request.method, request.url.path, type(error.__cause__).__name__
                )
                return error_response(ScimError(503, None, error.message))
            except Exception as error:
                log.error(
                    "unexpected %s on %s %s", type(error).__name__, request.method, request.url.path, exc_info=error
                )
                return error_response(
                    ScimError(
                        500,
                        None,
                        "Something went wrong on Tokensmith's side; "
                        "try again, and tell its administrator if it persists.",
                    )
                )

        return answer


async def require_provisioning_secret(request: Request) -> None:
    """Lets through only ``Authorization: Bearer <TOKENSMITH_SCIM_TOKEN>``. Never echoes a credential."""
    expected = get_runtime(request).settings.scim_token
    if expected is None:
        raise ScimError(
            404,
            None,
            "SCIM provisioning is off on this server. To turn it on, set "
            "TOKENSMITH_SCIM_TOKEN to a random secret of at least 24 characters, restart "
            "Tokensmith, and give the identity provider the same secret as its Bearer token.",
        )
    header = request.headers.get("authorization")
    if header is None:
        detail = "Authentication required: send the SCIM provisioning secret as Authorization: Bearer SECRET."
    elif presents_bearer_secret(header, expected):
        metrics.count_authentication("scim", "ok")
        return
    else:
        detail = (
            "That is not this server's SCIM provisioning secret (TOKENSMITH_SCIM_TOKEN), sent as "
            "Authorization: Bearer SECRET. Personal access tokens and passwords do not open SCIM."
        )
    metrics.count_authentication("scim", "unknown")
    log.info("SCIM authentication refused on %s %s", request.method, request.url.path)
    raise ScimError(401, None, detail)


router = APIRouter(
    prefix="/scim/v2",
    tags=["scim"],
    route_class=ScimRoute,
    include_in_schema=False,
    dependencies=[Depends(require_provisioning_secret)],
)


async def read_document(request: Request) -> object:
    """The request's JSON body."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type and media_type not in BODY_TYPES:
        raise ScimError(415, None, f"Send the body as {MEDIA_TYPE} or application/json, not {media_type[:80]}.")
    body = await request.body()  # at most the app's body limit (web/bodies.BodyLimit)
    try:
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested too deep for the parser
        raise ScimError(
            400,
            "invalidSyntax",
            "The body is not valid JSON (or it nests deeper, or holds a "
            "longer number, than a SCIM resource ever does).",
        ) from None


async def on_store(request: Request, work: Callable[[Session], T]) -> T:
    """Run ``work`` as one unit of work, off the event loop; committed before the answer."""
    try:
        return await get_runtime(request).run_unit(work)
    except IntegrityError:
        # Two requests provisioned the same userName at once; the store's unique index kept one.
        raise ScimError(
            409, "uniqueness", "Another request took this userName at the same moment; look the user up and retry."
        ) from None


def _integer(request: Request, name: str, default: int) -> int:
    value = request.query_params.get(name)
    if value is None or not value.strip():
        return default
    try:
        return int(value)
    except ValueError:  # not a number, or one of more than 4300 digits
        raise ScimError(400, "invalidValue", f"{name} must be a whole number.") from None


def _names(request: Request, name: str) -> list[str] | None:
    return provisioning.names(request.query_params.get(name), name)


def _shown(request: Request) -> resources.Shown:
    """``attributes`` or ``excludedAttributes`` (RFC 7644 §3.9), on every answer with a resource."""
    return resources.shown(_names(request, "attributes"), _names(request, "excludedAttributes"))


def _query(request: Request) -> provisioning.Query:
    return provisioning.Query(
        filter=request.query_params.get("filter") or "",
        start_index=_integer(request, "startIndex", 1),
        count=_integer(request, "count", provisioning.DEFAULT_COUNT),
        shown=_shown(request),
    )


def _public_url(request: Request) -> str:
    return get_runtime(request).settings.public_url


# --- Users ---------------------------------------------------------------------------------------


@router.api_route("/Users", methods=READ)
async def list_users(request: Request) -> Response:
    query, base = _query(request), _public_url(request)
    return scim_response(await on_store(request, lambda session: provisioning.search(session, query, base)))


@router.post("/Users/.search")
@router.post("/.search")
async def search(request: Request) -> Response:
    """RFC 7644 §3.4.3. At the root too: Users are the only resources Tokensmith serves."""
    query, base = provisioning.search_request(await read_document(request)), _public_url(request)
    return scim_response(await on_store(request, lambda session: provisioning.search(session, query, base)))


@router.api_route("/Users/.search", methods=["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def search_otherwise(request: Request) -> Response:
    """Before /Users/{user_id}, so that a GET here is a 405, not a search for a user ".search"."""
    return await elsewhere("Users/.search", request)


async def _resource_answer(request: Request, act: Callable[[Session], Any]) -> dict[str, Any]:
    """The resource of the user ``act`` returns, shaped by attributes/excludedAttributes."""
    base, shown = _public_url(request), _shown(request)
    return await on_store(request, lambda session: resources.resource(act(session), base, shown))


@router.post("/Users")
async def create_user(request: Request) -> Response:
    document, ip = await read_document(request), client_ip(request)
    created = await _resource_answer(request, lambda session: provisioning.create_user(session, document, ip=ip))
    return scim_response(created, 201, {"Location": resources.location(created["id"], _public_url(request))})


@router.api_route("/Users/{user_id}", methods=READ)
async def get_user(user_id: str, request: Request) -> Response:
    return scim_response(await _resource_answer(request, lambda session: provisioning.get_user(session, user_id)))


@router.put("/Users/{user_id}")
async def replace_user(user_id: str, request: Request) -> Response:
    document, ip = await read_document(request), client_ip(request)
    return scim_response(
        await _resource_answer(request, lambda session: provisioning.replace_user(session, user_id, document, ip=ip))
    )


@router.patch("/Users/{user_id}")
async def patch_user(user_id: str, request: Request) -> Response:
    document, ip = await read_document(request), client_ip(request)
    return scim_response(
        await _resource_answer(request, lambda session: provisioning.patch_user(session, user_id, document, ip=ip))
    )


@router.delete("/Users/{user_id}")
async def remove_user(user_id: str, request: Request) -> Response:
    ip = client_ip(request)
    await on_store(request, lambda session: provisioning.remove_user(session, user_id, ip=ip))
    return Response(status_code=204)


# --- discovery (RFC 7644 §4) --------------------------------------------------------------------


def _meta(base: str, resource_type: str, path: str) -> dict[str, str]:
    return {"resourceType": resource_type, "location": f"{base}/scim/v2/{path}"}


def _attribute(
    name: str,
    description: str,
    *,
    kind: str = "string",
    required: bool = False,
    multi: bool = False,
    uniqueness: str = "none",
    sub: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    attribute = {
        "name": name,
        "type": kind,
        "multiValued": multi,
        "description": description,
        "required": required,
        "caseExact": False,
        "mutability": "readWrite",
        "returned": "default",
        "uniqueness": uniqueness,
    }
    if sub:
        attribute["subAttributes"] = sub
    return attribute


def user_schema(base: str) -> dict[str, Any]:
    """The core User schema, restricted to the attributes Tokensmith keeps."""
    name_parts = [
        _attribute("formatted", "The person's full name, as sent; the display name when there is no displayName."),
        _attribute("givenName", "As sent; with familyName, the display name when there is no other."),
        _attribute("familyName", "As sent."),
    ]
    email_parts = [
        _attribute(
            "value",
            'The address. The account\'s own is the primary one, else the first of type "work", else the first.',
            required=True,
        ),
        _attribute("type", 'As sent, like "work" or "home".'),
        _attribute("primary", "At most one address is primary.", kind="boolean"),
    ]
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": protocol.USER_SCHEMA,
        "name": "User",
        "description": "A Tokensmith account",
        "attributes": [
            _attribute(
                "userName",
                "The login: 1 to 64 letters, digits, '.', '_', '@' or '-'; unique whatever the case.",
                required=True,
                uniqueness="server",
            ),
            _attribute("name", "The person's name.", kind="complex", sub=name_parts),
            _attribute("displayName", "The name shown for the person."),
            _attribute(
                "emails",
                "The person's email addresses, as sent (at most 20).",
                kind="complex",
                required=True,
                multi=True,
                sub=email_parts,
            ),
            # Required: an account is always enabled or disabled, there is no third state to
            # remove it to. A POST without it makes an enabled account, a PUT leaves it as it was.
            _attribute(
                "active",
                "false disables the account: sessions end and every token is revoked.",
                kind="boolean",
                required=True,
            ),
        ],
        "meta": _meta(base, "Schema", f"Schemas/{protocol.USER_SCHEMA}"),
    }


def user_resource_type(base: str) -> dict[str, Any]:
    return {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A Tokensmith account",
        "schema": protocol.USER_SCHEMA,
        "meta": _meta(base, "ResourceType", "ResourceTypes/User"),
    }


def _one_of(resources: list[dict[str, Any]], wanted: str, what: str) -> dict[str, Any]:
    for resource in resources:
        if resource["id"].lower() == wanted.lower():
            return resource
    raise ScimError(404, None, f"There is no {what} {wanted[:100]!r}.")


@router.api_route("/ServiceProviderConfig", methods=READ)
async def service_provider_config(request: Request) -> Response:
    base = _public_url(request)
    return scim_response(
        {
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
            "patch": {"supported": True},
            "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
            "filter": {"supported": True, "maxResults": provisioning.MAX_RESULTS},
            "changePassword": {"supported": False},
            "sort": {"supported": False},
            "etag": {"supported": False},
            "authenticationSchemes": [
                {
                    "type": "oauthbearertoken",
                    "name": "Bearer token",
                    "primary": True,
                    "description": "The provisioning secret TOKENSMITH_SCIM_TOKEN, as Authorization: Bearer SECRET.",
                }
            ],
            "meta": _meta(base, "ServiceProviderConfig", "ServiceProviderConfig"),
        }
    )


@router.api_route("/ResourceTypes", methods=READ)
async def resource_types(request: Request) -> Response:
    return scim_response(provisioning.listed([user_resource_type(_public_url(request))]))


@router.api_route("/ResourceTypes/{name}", methods=READ)
async def resource_type(name: str, request: Request) -> Response:
    return scim_response(_one_of([user_resource_type(_public_url(request))], name, "resource type"))


@router.api_route("/Schemas", methods=READ)
async def schemas(request: Request) -> Response:
    return scim_response(provisioning.listed([user_schema(_public_url(request))]))


@router.api_route("/Schemas/{schema_id}", methods=READ)
async def schema(schema_id: str, request: Request) -> Response:
    return scim_response(_one_of([user_schema(_public_url(request))], schema_id, "schema"))


def allowed_methods(rest: str) -> str | None:
    """The methods the path ``/scim/v2/{rest}`` serves, for a 405's ``Allow``; None: no such path."""
    parts = rest.strip("/").split("/")
    if parts == [".search"] or (parts[1:] == [".search"] and parts[0] == "Users"):
        return "POST"
    if parts[0] == "Users":
        return {1: "GET, HEAD, POST", 2: "GET, HEAD, PUT, PATCH, DELETE"}.get(len(parts))
    if parts[0] in ENDPOINTS and len(parts) <= 2 and (len(parts) == 1 or parts[0] != "ServiceProviderConfig"):
        return "GET, HEAD"
    return None


@router.api_route("/{rest:path}", methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
async def elsewhere(rest: str, request: Request) -> Response:
    """What no route above serves, answered in SCIM's words rather than as a web page."""
    allowed = allowed_methods(rest)
    if allowed is not None:
        return error_response(
            ScimError(405, None, f"{request.method} is not supported on /scim/v2/{rest[:100]}: it takes {allowed}."),
            {"Allow": allowed},
        )
    raise ScimError(
        404, None, f"Tokensmith serves no /scim/v2/{rest[:100]}: it provisions /Users (no /Groups, no /Bulk, no /Me)."
    )
