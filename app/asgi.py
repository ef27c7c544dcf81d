"""The Litestar application: REST /v2, GraphQL (with GraphiQL and subscriptions) at /graphql, /status, OpenAPI docs."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from litestar import Litestar, get
from strawberry.litestar import make_graphql_controller
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types.unset import UNSET

from app import db, outages
from app.config import get_settings
from app.graphql.context import Context, authorize_connection, context_getter
from app.graphql.schema import schema
from app.graphql.subscriptions import channels_plugin
from app.graphql.transport import GuardedGraphQLController
from app.rest.common import EXCEPTION_HANDLERS
from app.services import media_relay
from app.rest.conversations import ConversationController
from app.rest.inbound import InboundEmailController
from app.rest.limits import JsonLimitsMiddleware
from app.rest.meetings import JoinController, PalActivityController
from app.rest.openapi import openapi_config
from app.rest import ops
from app.rest.pals import FaceController, PalController
from app.rest.stream import conversation_stream
from app.rest.webhooks import WebhookController
from app.web import status as status_page
from app.services.invites import announce_sender_auth_mode

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
        connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout),
    )

    # GuardedGraphQLController (app/graphql/transport.py): the key before any parsing, bounded
    # websocket messages, revoked keys close open sockets, unauthenticated sockets capped.
    class GraphQLController(GuardedGraphQLController, base):  # type: ignore[valid-type,misc]
        include_in_schema = False  # described by schema.graphql, not the REST OpenAPI document

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
    announce_sender_auth_mode()
    # Everything built at startup (schema, routes, ~110,000 objects) stays for the process's
    # life: taking it out of the garbage collector's view turns its full collections from
    # ~80 ms pauses of the event loop (every request waits) into ~1 ms.
    gc.freeze()
    try:
        yield
    finally:
        await outages.stop()  # the probes of a PostgreSQL or Redis outage, if one is on
        await media_relay.close()  # the stream clients' pub/sub connections
        await db.close_pool()


def create_app(*, manage_pool: bool = True) -> Litestar:
    """Build the app. Tests that already hold a pool pass manage_pool=False."""
    settings = get_settings()
    app = Litestar(
        route_handlers=[
            PalController, FaceController, PalActivityController, JoinController, InboundEmailController,
            ConversationController, conversation_stream, WebhookController,
            graphql_controller(), healthz, *status_page.route_handlers, *ops.route_handlers,
        ],
        exception_handlers=EXCEPTION_HANDLERS,
        plugins=[channels_plugin()],
        lifespan=[lifespan] if manage_pool else [],
        request_max_body_size=settings.max_body_bytes,
        middleware=[JsonLimitsMiddleware()],  # JSON nesting bounded before parsing (app/rest/limits.py)
        openapi_config=openapi_config(),  # app/rest/openapi.py
    )
    # Every HTTP request timed by route template (404s too): wraps what Litestar routes through.
    app.asgi_handler = ops.HttpMetrics(app.asgi_handler)
    return app
