"""Health and metrics, for load balancers and Prometheus. No credentials needed."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from tokensmith.db import ping
from tokensmith.errors import StoreUnavailable
from tokensmith.web.runtime import get_runtime

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def health(request: Request) -> JSONResponse:
    """200 when the store answers, 503 when it does not."""
    runtime = get_runtime(request)
    try:
        await runtime.check_on_store(ping, runtime.check_engine)
    except StoreUnavailable as error:
        return JSONResponse(
            {"status": "unavailable", "message": error.message},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse({"status": "ok"})


@router.get("/metrics")
def prometheus_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
