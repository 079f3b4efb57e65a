"""The package (hotfix) repository, ``/packages/hotfix/``: Maven layout, for registered
instances only.

It takes an instance id and instance key (``tokensmith register``) and refuses every personal
token and password: the realm boundary the reference draws. The answer to a refused
credential says so, in words.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from tokensmith.errors import AuthenticationRequired, NotFound
from tokensmith.identity import BasicCredentials, Credentials
from tokensmith.projects import instances, maven_repository
from tokensmith.tokens import format as token_format
from tokensmith.web.auth import presented_credentials
from tokensmith.web.maven import file_response
from tokensmith.web.runtime import Runtime, get_runtime, has_encoded_separators

router = APIRouter(tags=["packages"], include_in_schema=False)

NOT_FOR_PACKAGES = (
    "Personal access tokens and passwords are not valid for the package repository. Use the "
    "instance id as the username and the instance key as the password: register an instance "
    "with `tokensmith register` (POST /api/v1/instances) to get them."
)


def _authorize(session: Session, runtime: Runtime, credentials: Credentials | None, path: str) -> Path:
    if credentials is None:
        raise AuthenticationRequired(
            "Authentication required: the instance id as the username, the instance key as the password."
        )
    if (
        not isinstance(credentials, BasicCredentials)
        or token_format.looks_like_token(credentials.secret, runtime.settings.token_prefix)
        or not credentials.secret.startswith(instances.KEY_PREFIX)
    ):
        raise instances.InstanceRefused(NOT_FOR_PACKAGES)
    instances.authenticate_instance(session, runtime.keys, credentials.username, credentials.secret)
    return maven_repository.resolve(
        maven_repository.hotfix_root(runtime.settings.data_dir), maven_repository.split_path(path)
    )


@router.api_route("/packages/hotfix/{path:path}", methods=["GET", "HEAD"])
async def hotfix_file(path: str, request: Request) -> Response:
    runtime = get_runtime(request)
    credentials = presented_credentials(request.headers, runtime.settings.token_prefix)
    if has_encoded_separators(request):
        raise NotFound("No such file in this repository.")
    file = await runtime.run_unit(lambda session: _authorize(session, runtime, credentials, path))
    return file_response(request, file)
