"""Per-request GraphQL context: who is calling, resolved lazily from the API key."""

from __future__ import annotations

from typing import Any

import strawberry
from litestar import Request
from litestar.channels import ChannelsPlugin
from strawberry.exceptions import ConnectionRejectionError
from strawberry.litestar import BaseContext

from app.domain.errors import Unauthenticated
from app.graphql.loaders import Loaders
from app.services.accounts import AccountRef, authenticate


class Context(BaseContext, kw_only=True):
    """`api_key` comes from the x-api-key header, or from connection_init over websockets."""

    api_key: str | None = None
    account_ref: AccountRef | None = None
    # Set by strawberry from the connection_init payload (websockets only).
    connection_params: dict[str, Any] | None = None
    # The process's ChannelsPlugin: live events arrive through it (app.graphql.subscriptions).
    channels: Any = None
    # Websockets: the place this connection holds among those not yet authenticated
    # (app.graphql.transport), given back on connection_ack or close.
    pending_slot: Any = None
    # The request's DataLoaders (app/graphql/loaders.py), made on first use: most
    # operations never list nested joins or meetings and should not pay for them.
    data_loaders: Any = None
    # Websockets: the multiplexing hook of one palEvents operation (app.graphql.multiplex), or None.
    live: Any = None

    async def account(self) -> AccountRef:
        if self.account_ref is None:
            self.account_ref = await authenticate(self.api_key)
        return self.account_ref

    def loaders(self) -> Loaders:
        if self.data_loaders is None:
            self.data_loaders = Loaders()
        return self.data_loaders


async def context_getter(request: Request, channels: ChannelsPlugin) -> Context:
    """The context of a websocket; HTTP operations build theirs in app/graphql/transport.py
    (`_http_context`) without Litestar's dependency injection, so only sockets come here.

    The key arrives later, in connection_init (see authorize_connection). Not parsing the
    socket's headers keeps Litestar from caching a parsed copy for the socket's whole life
    (~1.7 KiB per subscriber)."""
    return Context(channels=channels)


def api_key_from_params(params: Any) -> str | None:
    if not isinstance(params, dict):
        return None
    for name in ("x-api-key", "apiKey", "api_key"):
        value = params.get(name)
        if isinstance(value, str):
            return value
    return None


async def authorize_connection(context: Context) -> None:
    """on_ws_connect: the connection_init payload must carry a valid API key, else close 4403."""
    key = api_key_from_params(context.connection_params)
    try:
        context.account_ref = await authenticate(key)
    except Unauthenticated as exc:
        raise ConnectionRejectionError({"message": exc.message}) from exc
    context.api_key = key
    context.connection_params = None  # read once; not kept for the socket's life


Info = strawberry.Info[Context, None]
