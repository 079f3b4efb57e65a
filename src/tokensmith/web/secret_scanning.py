"""``POST /api/v1/secret-scanning/github``: GitHub's secret-scanning partner endpoint.

No credentials: the signature is the credential, checked over the raw body before anything in
it is read (tokens/secret_scanning.py). Its body limit is its own (``MAX_BODY``, set in app.py):
a report of 1,000 tokens is larger than the API's usual 64 KiB.
"""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, JsonValue, TypeAdapter, ValidationError

from tokensmith.errors import InvalidInput
from tokensmith.tokens import secret_scanning
from tokensmith.web.bodies import problems_of
from tokensmith.web.runtime import client_ip, get_runtime
from tokensmith.web.schemas import refusals

router = APIRouter(prefix="/api/v1/secret-scanning", tags=["leaks"])
PATH = "/api/v1/secret-scanning/github"
# A report of 1,000 findings with GitHub's usual URLs is about 160 to 200 KiB; this leaves room
# for long ones, and is a 413 past it.
MAX_BODY = 512 * 1024


EXAMPLE: dict[str, JsonValue] = {
    "token": "tks_…the token found",
    "type": "tokensmith_personal_access_token",
    "url": "https://github.com/octocat/hello/blob/1a2b3c/config.env",
    "source": "content",
}


class ScanFinding(BaseModel):
    """One token GitHub found, as its partner format has it."""

    model_config = ConfigDict(json_schema_extra={"example": EXAMPLE})

    token: str = Field(max_length=200, description="The string found")
    type: str = Field("", max_length=100, description="The secret type it was found as")
    url: str = Field("", max_length=4096, description="Where it was found")
    source: str = Field("", max_length=100, description="What it was found in: content, commit, npm, ...")


Report = Annotated[list[ScanFinding], Field(min_length=1, max_length=secret_scanning.MAX_FINDINGS)]
_REPORT = TypeAdapter(Report)


class ScanVerdict(BaseModel):
    token_hash: str = Field(description="SHA-256 of the token found, in hex")
    token_type: str = Field(description="The type the finding came with")
    label: str = Field(description="true_positive: a token this server issued; false_positive: anything else")


def _documented_report() -> dict[str, Any]:
    schema = {"type": "array", "minItems": 1, "maxItems": secret_scanning.MAX_FINDINGS}
    schema["items"] = ScanFinding.model_json_schema()
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def read_report(body: bytes) -> list[secret_scanning.Finding]:
    """The findings of a report whose signature was checked: refused whole (422) unless it is a
    JSON array of 1 to 1,000 findings."""
    example = orjson.dumps([EXAMPLE]).decode()
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise InvalidInput(f"The report must be a JSON array like {example}. Nothing was revoked.") from None
    try:
        findings = _REPORT.validate_python(data, strict=True)
    except ValidationError as error:
        raise InvalidInput(
            f"The report is not of the right shape ({problems_of([dict(e) for e in error.errors()])}): send 1 to "
            f"{secret_scanning.MAX_FINDINGS:,} findings like {example}. Nothing was revoked."
        ) from None
    return [secret_scanning.Finding(f.token, f.type, f.url, f.source) for f in findings]


@router.post(
    "/github",
    response_model=list[ScanVerdict],
    openapi_extra=_documented_report(),
    responses=refusals(401, 413, 422, 503),
)
async def github_report(
    request: Request,
    github_public_key_identifier: Annotated[str | None, Header(max_length=200)] = None,
    github_public_key_signature: Annotated[str | None, Header(max_length=400)] = None,
) -> Response:
    """GitHub's secret scanning found tokens of this server in public (a repository, a gist, an
    npm package): every live one is revoked at once, with where it was found, and its owner told.

    Signed by GitHub (`Github-Public-Key-Identifier`, `Github-Public-Key-Signature`: ECDSA P-256
    SHA-256 over the raw body, by a key published at TOKENSMITH_SECRET_SCANNING_KEYS_URL); anything
    else is a 401 and revokes nothing. Each finding is answered with its label.
    """
    runtime = get_runtime(request)
    body = await request.body()
    await runtime.scanning_keys.verify(body, github_public_key_identifier, github_public_key_signature)
    findings = read_report(body)
    verdicts = await runtime.run_unit(
        lambda session: secret_scanning.revoke_found(
            session, runtime.keys, findings, prefix=runtime.settings.token_prefix, ip=client_ip(request)
        )
    )
    return Response(
        orjson.dumps([{"token_hash": v.token_hash, "token_type": v.token_type, "label": v.label} for v in verdicts]),
        media_type="application/json",
    )
