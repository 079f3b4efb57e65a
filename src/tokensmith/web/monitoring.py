"""Health for load balancers (no credentials) and metrics for Prometheus (this machine, or a secret)."""

from __future__ import annotations

import ipaddress

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field

from tokensmith import metrics
from tokensmith.errors import StoreUnavailable
from tokensmith.store.database import ping
from tokensmith.web.auth import presents_bearer_secret
from tokensmith.web.runtime import client_ip, get_runtime
from tokensmith.web.schemas import ErrorBody

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    status: str = Field(description='"ok", or "unavailable" when the store does not answer')
    message: str | None = Field(default=None, description="Why, when unavailable")


@router.get(
    "/healthz",
    response_model=Health,
    responses={503: {"model": Health, "description": "The store does not answer (Retry-After)"}},
)
async def health(request: Request) -> JSONResponse:
    """200 when the store answers, 503 when it does not."""
    runtime = get_runtime(request)
    try:
        await runtime.check_on_store(ping, runtime.check_connection)
    except StoreUnavailable as error:
        return JSONResponse(
            {"status": "unavailable", "message": error.message},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ok"})


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}, "description": "Prometheus' text format"},
        401: {
            "model": ErrorBody,
            "description": "TOKENSMITH_METRICS_TOKEN is set and was not presented as a Bearer token",
        },
        403: {
            "model": ErrorBody,
            "description": "No TOKENSMITH_METRICS_TOKEN is set, and the request is not from this machine",
        },
    },
)
def prometheus_metrics(request: Request) -> Response:
    """The Prometheus metrics of this instance, every worker's added up: to whoever presents
    TOKENSMITH_METRICS_TOKEN as a Bearer token, or, when none is set, to this machine only (loopback)."""
    secret = get_runtime(request).settings.metrics_token
    if secret is not None and not presents_bearer_secret(request.headers.get("authorization"), secret):
        return JSONResponse(
            {
                "error": "authentication_required",
                "message": "Send this server's metrics secret (TOKENSMITH_METRICS_TOKEN) as Authorization: Bearer "
                "SECRET.",
            },
            status_code=401,
            headers={"WWW-Authenticate": 'Bearer realm="tokensmith-metrics"'},
        )
    if secret is None and not _from_this_machine(request):
        return JSONResponse(
            {
                "error": "forbidden",
                "message": "Metrics are served to this machine only. To scrape them from elsewhere, set "
                "TOKENSMITH_METRICS_TOKEN and send it as Authorization: Bearer SECRET.",
            },
            status_code=403,
        )
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def _from_this_machine(request: Request) -> bool:
    address = client_ip(request)
    return address is not None and ipaddress.ip_address(address).is_loopback
