"""Operator endpoints of the API: GET /metrics, GET /readyz, and the timing of every HTTP request.

Neither endpoint takes an API key or touches tenant data: /metrics wants the METRICS_TOKEN
bearer token when one is set (docs/operations.md), /readyz nothing. /healthz (app/asgi.py)
stays the liveness probe: it answers as long as the process does.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import MediaType, Request, Response, get
from litestar.exceptions import NotAuthorizedException

from app import metrics
from app.clock import utcnow
from app.services.observability import OK, readiness, refresh_scrape_gauges


@get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response[bytes]:
    if not metrics.authorized(request.headers.get("authorization")):
        raise NotAuthorizedException("A valid METRICS_TOKEN bearer token is required.",
                                     headers={"WWW-Authenticate": 'Bearer realm="metrics"'})
    await refresh_scrape_gauges(utcnow())
    # Litestar appends "; charset=utf-8" to text/* itself.
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE.split("; charset=")[0])


@get("/readyz", include_in_schema=False)
async def readyz() -> Response[dict[str, Any]]:
    """200 when PostgreSQL and Redis both answer in time; else 503 naming what failed."""
    checks = await readiness()
    ready = all(result == OK for result in checks.values())
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    return Response(body, status_code=200 if ready else 503, media_type=MediaType.JSON,
                    headers={"Cache-Control": "no-store"})


route_handlers = [metrics_endpoint, readyz]


class HttpMetrics:
    """ASGI wrapper around the whole Litestar handler (inside its exception handling, so 404s and
    405s count too): times each HTTP request to its last body byte, labelled by the route
    template the router matched (`/v2/pals/{pal_id:str}`, never the raw path) or `unmatched`.
    Websockets are long-lived and not timed here (see pal_graphql_websockets_open)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]

        async def timed_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            # The router wrote the matched template into this same scope dict.
            metrics.observe_http(scope.get("method", ""), scope.get("path_template") or None, status[0],
                                 time.perf_counter() - started)
