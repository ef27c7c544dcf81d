"""The live status page: plain HTML and JS served by the app, fed by the palEvents subscription."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from litestar import MediaType, Response, get
from litestar.exceptions import NotFoundException

from app.config import get_settings

STATIC = Path(__file__).parent / "static"
ASSETS = {"status.js": "text/javascript; charset=utf-8", "status.css": "text/css; charset=utf-8",
          # The dashboard's GraphQL operations (typed clients are generated from them: codegen/).
          "operations.graphql": "application/graphql; charset=utf-8"}
# Only our own files may run or be fetched; the API key never leaves this origin.
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@cache
def _read(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


@get("/status", include_in_schema=False)
async def status_page() -> Response[str]:
    # The page opens one websocket per this many PALs, so it must know the server's limit.
    limit = str(get_settings().max_subscriptions_per_connection)
    html = _read("status.html").replace("{{MAX_SUBSCRIPTIONS}}", limit)
    return Response(html, media_type=MediaType.HTML, headers=HEADERS)


@get("/status/{name:str}", include_in_schema=False)
async def status_asset(name: str) -> Response[str]:
    if name not in ASSETS:
        raise NotFoundException(f"No such asset: {name}")
    return Response(_read(name), media_type=ASSETS[name], headers=HEADERS)


route_handlers = [status_page, status_asset]
