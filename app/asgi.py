"""The Litestar application: REST /v2, GraphQL (with GraphiQL and subscriptions) at /graphql, /status, OpenAPI docs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar, get
from litestar.openapi import OpenAPIConfig
from strawberry.litestar import make_graphql_controller
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET

from app import db
from app.config import get_settings
from app.graphql.context import Context, authorize_connection, context_getter
from app.graphql.schema import schema
from app.graphql.subscriptions import channels_plugin
from app.rest.common import EXCEPTION_HANDLERS
from app.rest.conversations import ConversationController
from app.rest.inbound import InboundEmailController
from app.rest.meetings import JoinController, PalActivityController
from app.rest.pals import FaceController, PalController
from app.web import status as status_page

log = logging.getLogger(__name__)


def graphql_controller():
    settings = get_settings()
    base = make_graphql_controller(
        schema,
        path="/graphql",
        graphql_ide="graphiql",
        context_getter=context_getter,
        # Only graphql-transport-ws: the legacy graphql-ws protocol had an auth bypass (CVE-2026-35526).
        subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,),
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        allowed_origins=settings.allowed_origins,
    )

    class GraphQLController(base):  # type: ignore[valid-type,misc]
        async def on_ws_connect(self, context: Context):  # type: ignore[override]
            await authorize_connection(context)  # wrong or missing key: close 4403
            return UNSET

    return GraphQLController


@get("/healthz", include_in_schema=False)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@asynccontextmanager
async def lifespan(_: Litestar) -> AsyncIterator[None]:
    await db.open_pool()
    try:
        yield
    finally:
        await db.close_pool()


def create_app(*, manage_pool: bool = True) -> Litestar:
    """Build the app. Tests that already hold a pool pass manage_pool=False."""
    settings = get_settings()
    return Litestar(
        route_handlers=[
            PalController, FaceController, PalActivityController, JoinController, InboundEmailController,
            ConversationController,
            graphql_controller(), healthz, *status_page.route_handlers,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        plugins=[channels_plugin()],
        lifespan=[lifespan] if manage_pool else [],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(title="PAL meetings API", version="2", path="/docs"),
    )
