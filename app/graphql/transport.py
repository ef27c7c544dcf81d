"""GraphQL's HTTP and websocket transports, hardened (security review, issue 10).

* **No key, no parsing.** POST and GET /graphql check the x-api-key header before the
  body is read: without a valid key the answer is a 401 with a GraphQL-shaped error
  (`extensions.code` UNAUTHENTICATED), and nothing of the document is parsed. This
  includes introspection; GraphiQL's page itself (GET with Accept: text/html) is served
  to anyone, and sends the key from its Headers tab.
* **Websockets**: nothing runs before a connection_init with a valid key (strawberry
  closes a subscribe before the ack with 4401; `on_ws_connect` closes a bad key with
  4403). A socket that sends no connection_init within WS_INIT_TIMEOUT_SECONDS is closed
  4408; at most MAX_UNAUTHENTICATED_WEBSOCKETS per process may be waiting, more are
  closed at once with 1013 (try again later). A message larger than MAX_BODY_BYTES, the
  HTTP body limit, closes the socket with 1009 before it is decoded.
* **Revoked keys**: every operation on an open socket re-checks its key (through the same
  cache as REST, AUTH_CACHE_SECONDS), and each socket re-checks it when its cache entry
  expires; a key that is no longer valid ends the socket's operations and closes it 4403.
* **Outages** (app/outages.py): PostgreSQL or Redis out of reach is SERVICE_UNAVAILABLE.
  Over HTTP that is a 503 with Retry-After (when the key cannot be checked, or no data came
  back). Over websockets, once an outage is declared every socket is closed with 1013
  (Try Again Later) and new ones are closed with 1013 until it is over; clients reconnect
  with backoff and resubscribe with `after` = their last event id (docs/live-status.md).

* **One JSON answer**: a plain `application/json` POST of one operation skips the parts of
  Strawberry's view that are not GraphQL's work (`_plain_operation`); everything else takes
  the view's full path. Either way a subscription needs the websocket or a streaming Accept.

Document limits (size, tokens, aliases, depth, cost) are in app/graphql/limits.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import weakref
from collections import deque
from collections.abc import AsyncGenerator, Callable
from contextlib import suppress
from typing import Any

from litestar import MediaType, Request, Response, get, post
from litestar.background_tasks import BackgroundTasks
from litestar.channels import ChannelsPlugin
from litestar.exceptions import NotFoundException, ValidationException, WebSocketDisconnect
from litestar.types import Empty
from litestar.utils.scope.state import ScopeState
import msgspec
from cross_web import HTTPException
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLRequestData
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types.graphql import OperationType
from strawberry.litestar.controller import LitestarWebSocketAdapter
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
    _OperationStreamClosed,
)
from strawberry.types.unset import UNSET
from strawberry.utils.aio import aclosing

from app import metrics, outages
from app.config import get_settings
from app.domain.errors import Unauthenticated
from app.graphql.context import Context
from app.graphql.multiplex import Member
from app.services.accounts import authenticate_until

log = logging.getLogger(__name__)

# A socket re-checks its key when the cache entry expires, plus a little jitter so that
# thousands of sockets on one key do not wake at the same instant; never more often than this.
MIN_RECHECK_SECONDS = 0.5
RECHECK_JITTER_SECONDS = 0.2
RECHECK_RETRY_SECONDS = 2.0  # after PostgreSQL failed to answer
# RFC 6455 "Try Again Later": PostgreSQL or Redis is down (app/outages.py).
TRY_AGAIN_LATER = 1013
UNAVAILABLE_REASON = "Service temporarily unavailable; reconnect later and resubscribe with after=<last event id>"
# Live frames queued for one socket; a socket this far behind is closed (TRY_AGAIN_LATER) instead
# of holding up the others or growing without bound. It resubscribes with `after`.
MAX_OUTBOX = 1000
# Bytes a socket may have waiting in its transport (uvicorn writes without backpressure).
MAX_BUFFERED_BYTES = 8 * 1024 * 1024
TOO_SLOW_REASON = "Too slow to read its events; reconnect and resubscribe with after=<last event id>"


class PendingSockets:
    """This process's websockets that have not been acknowledged (no valid connection_init yet)."""

    def __init__(self) -> None:
        self.count = 0

    def take(self, limit: int) -> "PendingSlot | None":
        if self.count >= limit:
            return None
        self.count += 1
        return PendingSlot(self)


class PendingSlot:
    def __init__(self, owner: PendingSockets) -> None:
        self._owner: PendingSockets | None = owner

    def release(self) -> None:
        if self._owner is not None:
            self._owner.count -= 1
            self._owner = None


PENDING = PendingSockets()


def _release_slot(context: Any) -> None:
    slot = getattr(context, "pending_slot", None)
    if slot is not None:
        slot.release()


def unauthenticated(exc: Unauthenticated) -> Response:
    return Response({"errors": [{"message": exc.message, "extensions": {"code": exc.code}}]},
                    status_code=401, media_type=MediaType.JSON)


def service_unavailable() -> Response:
    return Response({"errors": [{"message": outages.MESSAGE, "extensions": {"code": outages.SERVICE_UNAVAILABLE}}]},
                    status_code=503, media_type=MediaType.JSON, headers=outages.retry_after_headers())


def _unavailable_result(data: Any) -> bool:
    """A GraphQL result that is all SERVICE_UNAVAILABLE: no data, and an outage among its errors."""
    if not isinstance(data, dict) or data.get("data") is not None:
        return False
    return any(isinstance(error, dict) and (error.get("extensions") or {}).get("code") == outages.SERVICE_UNAVAILABLE
               for error in data.get("errors") or ())


# Acknowledged sockets of this process, closed with 1013 when an outage is declared.
_SOCKETS: "weakref.WeakSet[GuardedTransportWSHandler]" = weakref.WeakSet()
_CLOSING: set[asyncio.Task] = set()


def _close_later(loop: asyncio.AbstractEventLoop, closing: Any) -> None:
    """Run a socket's close in the background, holding the task until it is done."""
    task = loop.create_task(closing)
    _CLOSING.add(task)
    task.add_done_callback(_CLOSING.discard)


def _close_sockets(dependency: str) -> None:
    loop = asyncio.get_running_loop()
    for handler in list(_SOCKETS):
        if handler.loop is loop:
            _close_later(loop, handler.unavailable())


outages.on_outage(_close_sockets)
# Read at scrape time (app/metrics.py): nothing to keep in step on the hot path.
metrics.WEBSOCKETS_OPEN.set_function(lambda: len(_SOCKETS))
metrics.SUBSCRIPTIONS_OPEN.set_function(lambda: sum(len(handler.operations) for handler in list(_SOCKETS)))


def _too_big(text: str, limit: int) -> bool:
    """Whether `text` is more than `limit` bytes in UTF-8 (without encoding it when it can't be)."""
    if len(text) > limit:
        return True
    if len(text) * 4 <= limit:
        return False
    return len(text.encode("utf-8", "surrogatepass")) > limit


class BoundedWebSocketAdapter(LitestarWebSocketAdapter):
    """Strawberry's adapter, but a message larger than an HTTP body may be closes the socket (1009)."""

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        limit = get_settings().max_body_bytes
        try:
            while self.ws.connection_state != "disconnect":
                text = await self.ws.receive_text()
                if text == "":  # Litestar's value for a binary message
                    raise NonTextMessageReceived
                if _too_big(text, limit):
                    log.info("graphql websocket: a message over %d bytes; closing 1009", limit)
                    await self.close(1009, "Message too big")
                    return
                try:
                    yield self.view.decode_json(text)
                except json.JSONDecodeError as exc:
                    if not ignore_parsing_errors:
                        raise NonJsonMessageReceived from exc
        except WebSocketDisconnect:
            pass


class _DirectWriter:
    """Writes text frames straight through uvicorn's sans-I/O websocket protocol.

    Its ASGI `send` does exactly this (encode, frame, `transport.write`) and never waits, so
    a fan-out can skip the ASGI layers and the task per socket: ~4x less CPU per subscriber
    (bench/ws_fanout_bench.py). It also exposes what uvicorn does not bound: the bytes waiting
    in the transport, which is how a slow reader is recognised.
    """

    __slots__ = ("protocol",)

    def __init__(self, protocol: Any) -> None:
        self.protocol = protocol

    def buffered(self) -> int:
        return self.protocol.transport.get_write_buffer_size()

    def write(self, frame: str) -> bool:
        protocol = self.protocol
        if protocol.close_sent or protocol.transport.is_closing():
            return False
        protocol.conn.send_text(frame.encode())
        protocol.transport.write(b"".join(protocol.conn.data_to_send()))
        return True


def _direct_writer(send: Any) -> _DirectWriter | None:
    """The uvicorn protocol behind an ASGI `send` (through Litestar's wrappers), if it is the sans-I/O one."""
    seen = 0
    pending = [send]
    while pending and seen < 8:
        candidate = pending.pop()
        seen += 1
        owner = getattr(candidate, "__self__", None)
        if type(owner).__name__ == "WebSocketsSansIOProtocol" and all(
                hasattr(owner, name) for name in ("conn", "transport", "close_sent")):
            return _DirectWriter(owner)
        for cell in getattr(candidate, "__closure__", None) or ():
            with suppress(ValueError):
                if callable(cell.cell_contents):
                    pending.append(cell.cell_contents)
    return None


# Shared by the receive queues of all acknowledged sockets, in place of two per socket (below).
_NO_PUTTERS: tuple[()] = ()
_NEVER_JOINED = asyncio.Event()


def _slim_queue(queue: Any) -> None:
    """Free the parts of uvicorn's per-socket receive queue it never uses (~1.5 KiB per socket).

    The queue is unbounded, so `put` never waits and its putters deque stays empty (an empty
    tuple reads the same: `_wakeup_next` only loops while it is non-empty); nothing calls
    `join`/`task_done`, so the `_finished` Event is only ever cleared. Each was a deque of
    ~0.75 KiB. Only touched when the queue is the plain unbounded asyncio one.
    """
    if (type(queue) is asyncio.Queue and queue.maxsize <= 0 and not getattr(queue, "_putters", True)
            and hasattr(queue, "_finished")):
        queue._putters = _NO_PUTTERS  # type: ignore[attr-defined]
        queue._finished = _NEVER_JOINED  # type: ignore[attr-defined]


def _drop_handshake(direct: _DirectWriter | None, scope: Any) -> None:
    """Let go of the handshake's headers, kept for the socket's life though read only once (~4 KiB).

    uvicorn keeps the parsed request and response, and websockets' handshake parser keeps the
    request in its suspended frame (so dropping uvicorn's reference alone frees nothing: its
    headers are emptied instead). The ASGI scope keeps the raw headers, and Litestar a decoded
    copy that Strawberry's origin check made. The socket is acknowledged by now: the key came
    in connection_init, and nothing reads a header again.
    """
    if direct is not None and getattr(direct.protocol, "handshake_complete", True):
        protocol = direct.protocol
        for name in ("request", "response"):
            message = getattr(protocol, name, None)
            with suppress(AttributeError):
                message.headers.clear()
                setattr(protocol, name, None)
        _slim_queue(getattr(protocol, "queue", None))
        own_scope = getattr(protocol, "scope", None)
        if isinstance(own_scope, dict) and own_scope is not scope:
            own_scope["headers"] = []
    if isinstance(scope, dict) and scope.get("type") == "websocket":
        scope["headers"] = []
        with suppress(Exception):
            ScopeState.from_scope(scope).headers = Empty


class KeyWatch:
    """One re-check of an API key for all of this process's sockets that use it.

    Each socket used to run its own task for this (~2 KiB each); they all asked the same
    cache, so one task per key does the same: when the key's cache entry expires it is
    checked again, and once it is no longer valid every socket that uses it is closed 4403.
    """

    _watches: "dict[tuple[Any, str | None], KeyWatch]" = {}

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.sockets: "weakref.WeakSet[GuardedTransportWSHandler]" = weakref.WeakSet()
        self.task: asyncio.Task | None = None

    @classmethod
    def follow(cls, handler: "GuardedTransportWSHandler") -> None:
        slot = (handler.loop, handler.context.api_key)
        watch = cls._watches.get(slot)
        if watch is None:
            watch = cls._watches[slot] = KeyWatch(handler.context.api_key)
            watch.task = handler.loop.create_task(watch.run(slot))
        watch.sockets.add(handler)

    @classmethod
    def forget(cls, handler: "GuardedTransportWSHandler") -> None:
        slot = (handler.loop, handler.context.api_key)
        watch = cls._watches.get(slot)
        if watch is None:
            return
        watch.sockets.discard(handler)
        if not watch.sockets:
            del cls._watches[slot]
            if watch.task is not None and watch.task is not asyncio.current_task():
                watch.task.cancel()

    async def run(self, slot: tuple[Any, str | None]) -> None:
        try:
            while self.sockets:
                try:
                    _, until = await authenticate_until(self.key)
                except Unauthenticated:
                    for handler in list(self.sockets):
                        _close_later(handler.loop, handler._revoke())
                    return
                except Exception as exc:
                    if not outages.report(exc):  # an outage is logged once, by app/outages.py
                        log.warning("graphql websocket: could not re-check the API key; retrying", exc_info=True)
                    until = time.monotonic() + RECHECK_RETRY_SECONDS
                delay = max(until - time.monotonic(), MIN_RECHECK_SECONDS)
                await asyncio.sleep(delay + random.uniform(0, RECHECK_JITTER_SECONDS))
        finally:
            if self._watches.get(slot) is self:
                del self._watches[slot]


class GuardedTransportWSHandler(BaseGraphQLTransportWSHandler):
    """graphql-transport-ws with the key re-checked per operation and on every cache expiry."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watched = False  # followed by the KeyWatch of its key once acknowledged
        self.loop = asyncio.get_running_loop()
        # Multiplexed palEvents operations (app/graphql/multiplex.py) and the live frames their
        # groups queued for this socket, written by one writer task that exists only while busy.
        self._members: dict[str, Member] = {}
        self._outbox: deque[str] | None = None  # created when first needed (~0.75 KiB per socket)
        self._writer: asyncio.Task | None = None
        self._direct: Any = UNSET  # _DirectWriter, or None when the server is not uvicorn's sans-I/O one
        self._closing = False

    # --- multiplexed palEvents ---------------------------------------------------------------

    async def run_operation(self, operation: Operation) -> None:
        """Strawberry's operation task; a palEvents operation stays open after its history is sent."""
        member = Member(self, self.schema, operation.id, operation.query, operation.variables,
                        operation.operation_name)
        self._members[operation.id] = member
        live = False
        try:
            context = msgspec.structs.replace(self.context, live=member)
            result_source = await self.schema.stream(
                operation.query, variable_values=operation.variables, context_value=context,
                root_value=self.root_value, operation_name=operation.operation_name)
            async with aclosing(result_source):
                await self._send_result_stream(operation, result_source)
            if member.group is not None and not operation.completed and operation.id in self.operations:
                member.go_live()  # from now on its group sends its events
                live = True
                return
            await operation.send_operation_message({"id": operation.id, "type": "complete"})
        except _OperationStreamClosed:
            return
        except Exception as error:
            await self.handle_task_exception(error)
            with suppress(Exception):
                await operation.send_operation_message({"id": operation.id, "type": "complete"})
            self.operations.pop(operation.id, None)
            raise
        finally:
            if not live:
                self._forget_member(operation.id)

    def _forget_member(self, operation_id: str) -> None:
        member = self._members.pop(operation_id, None)
        if member is not None:
            member.leave()

    async def cleanup_operation(self, operation_id: str) -> None:
        self._forget_member(operation_id)
        await super().cleanup_operation(operation_id)

    async def end_operation(self, operation_id: str, message: dict[str, Any]) -> None:
        """The group of a live operation ended: tell the client, and free the operation id."""
        self._forget_member(operation_id)
        operation = self.operations.get(operation_id)
        if operation is not None:
            await operation.send_operation_message(message)  # type: ignore[arg-type]

    def enqueue(self, frame: str) -> None:
        """Send or queue one live frame; never waits, so one slow socket cannot hold up a fan-out."""
        if self._closing:
            return
        direct = self._direct
        if direct is UNSET:
            direct = self._direct = _direct_writer(self.websocket.ws.send)  # type: ignore[attr-defined]
        if direct is not None and self._writer is None:
            # uvicorn's sans-I/O protocol: write the frame now, as its ASGI send would, without a task.
            if direct.buffered() > MAX_BUFFERED_BYTES:
                self.too_slow()
            elif not direct.write(frame):
                self._closing = True
            return
        if self._outbox is None:
            self._outbox = deque()
        if len(self._outbox) >= MAX_OUTBOX:
            self.too_slow()
            return
        self._outbox.append(frame)
        if self._writer is None:
            self._writer = self.loop.create_task(self._write())

    async def _write(self) -> None:
        try:
            send = self.websocket.ws.send_data  # type: ignore[attr-defined]
            while self._outbox:
                await send(self._outbox.popleft())
        except Exception:  # the socket is gone: its reader ends the operations
            self._outbox = None
        finally:
            self._writer = None

    def too_slow(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._outbox = None
        log.info("graphql websocket: %d live frames behind; closing %d", MAX_OUTBOX, TRY_AGAIN_LATER)
        _close_later(self.loop, self.unavailable(TOO_SLOW_REASON))

    async def handle_connection_init(self, message: Any) -> None:
        if outages.is_down():
            await self._close_unavailable()
            return
        try:
            await super().handle_connection_init(message)
        except Exception as exc:
            if not outages.report(exc):  # the key could not be checked: PostgreSQL is down
                raise
            await self._close_unavailable()
            return
        if self.connection_acknowledged and not self._watched:
            _release_slot(self.context)
            _SOCKETS.add(self)
            self._watched = True
            KeyWatch.follow(self)
            # Found once per socket: the live frames are written through it too (enqueue).
            self._direct = _direct_writer(self.websocket.ws.send)  # type: ignore[attr-defined]
            _drop_handshake(self._direct, self.websocket.ws.scope)  # type: ignore[attr-defined]

    async def handle_subscribe(self, message: Any) -> None:
        if self.connection_acknowledged and not await self._key_still_valid(message["id"]):
            return
        await super().handle_subscribe(message)

    async def shutdown(self) -> None:
        _SOCKETS.discard(self)
        self._closing = True
        self._outbox = None
        if self._watched:
            KeyWatch.forget(self)
        _release_slot(self.context)
        await super().shutdown()

    async def _key_still_valid(self, operation_id: str) -> bool:
        try:
            self.context.account_ref, _ = await authenticate_until(self.context.api_key)
            return True
        except Unauthenticated:
            await self._revoke()
            return False
        except Exception as exc:  # PostgreSQL did not answer: refuse this operation, keep the socket
            code = outages.SERVICE_UNAVAILABLE  # an outage is logged once, by app/outages.py
            if not outages.report(exc):
                code = "INTERNAL_SERVER_ERROR"
                log.warning("graphql websocket: could not re-check the API key", exc_info=True)
            await self.send_message({"id": operation_id, "type": "error", "payload": [{  # type: ignore[typeddict-item]
                "message": "Could not check the API key; try again.", "extensions": {"code": code}}]})
            return False

    async def unavailable(self, reason: str = UNAVAILABLE_REASON) -> None:
        """An outage was declared (or the client reads too slowly): end the operations and close
        1013, Try Again Later (the client resubscribes with after=<last event id>)."""
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        await self._close_unavailable(reason)

    async def _close_unavailable(self, reason: str = UNAVAILABLE_REASON) -> None:
        _SOCKETS.discard(self)
        with suppress(Exception):
            await self.websocket.close(TRY_AGAIN_LATER, reason)

    async def _revoke(self) -> None:
        log.info("graphql websocket: its API key is no longer valid; ending %d operation(s), closing 4403",
                 len(self.operations))
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        with suppress(Exception):
            await self.websocket.close(4403, "API key revoked")


def _http_context(request: Request) -> Context:
    """The context of one HTTP operation, built without Litestar's dependency injection.

    Strawberry's controller asks Litestar for four dependencies per request; Litestar resolves
    them in an anyio task group (three tasks) and builds the sub-response in a worker thread
    (`sync_to_thread=True`). That was ~30 % of a `pal(palId)` request's CPU (bench/api_bench.py,
    docs/benchmarks.md). The context is the same one `context_getter` builds for websockets.
    """
    sub_response: Response = Response({}, background=BackgroundTasks([]))
    # Per request, not on the controller: Strawberry keeps it in `self.temporal_response`, one
    # attribute shared by every request in flight, so one request could read another's.
    request.scope["graphql_sub_response"] = sub_response  # type: ignore[typeddict-unknown-key]
    return Context(api_key=request.headers.get("x-api-key"), channels=request.app.plugins.get(ChannelsPlugin),
                   request=request, response=sub_response)


_STREAMING_ACCEPT = ("multipart/", "text/event-stream")
# What an HTTP request answered with one JSON document may run (GET never changes anything).
_ONE_ANSWER = {"GET": frozenset({OperationType.QUERY}),
               "POST": frozenset({OperationType.QUERY, OperationType.MUTATION})}


async def _plain_operation(request: Request, decode_json: Callable[[bytes], Any]) -> GraphQLRequestData | None:
    """The operation of a plain `application/json` POST of one operation that wants one JSON
    answer; None for anything else, which takes Strawberry's full path (GET, GraphiQL,
    batches, uploads, streaming, and every malformed body with its 400)."""
    if request.method != "POST":
        return None
    headers = request.headers
    if headers.get("content-type", "").split(";", 1)[0].strip().lower() != "application/json":
        return None
    accept = headers.get("accept", "")
    if any(kind in accept for kind in _STREAMING_ACCEPT):
        return None
    try:
        data = decode_json(await request.body())  # the body stays cached for the full path
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    query, variables = data.get("query"), data.get("variables")
    name, extensions = data.get("operationName"), data.get("extensions")
    if (not isinstance(query, str) or not isinstance(variables, (dict, type(None)))
            or not isinstance(name, (str, type(None))) or not isinstance(extensions, (dict, type(None)))):
        return None
    return GraphQLRequestData(query=query, variables=variables, operation_name=name, extensions=extensions,
                              protocol="http")


class GuardedGraphQLController:
    """Mixed in before the controller that strawberry's make_graphql_controller builds (app/asgi.py)."""

    websocket_adapter_class = BoundedWebSocketAdapter
    graphql_transport_ws_handler_class = GuardedTransportWSHandler

    # The same routes as Strawberry's, minus the per-request dependency injection (see _http_context).
    @get(raises=[ValidationException, NotFoundException])
    async def handle_http_get(self, request: Request[Any, Any, Any]) -> Response:
        return await self.execute_request(request, _http_context(request), None)

    @post(status_code=200)
    async def handle_http_post(self, request: Request[Any, Any, Any]) -> Response:
        return await self.execute_request(request, _http_context(request), None)

    async def get_sub_response(self, request: Request[Any, Any, Any]) -> Response:
        return request.scope["graphql_sub_response"]  # type: ignore[typeddict-item]

    def decode_json(self, data: str | bytes) -> object:
        try:
            return json.loads(data)
        except RecursionError:
            raise json.JSONDecodeError("JSON nested too deeply", "", 0) from None

    async def execute_request(self, request: Any, context: Any, root_value: Any) -> Response:
        adapter = self.request_adapter_class(request)  # type: ignore[attr-defined]
        if self.is_request_allowed(adapter) and not self.should_render_graphql_ide(adapter):  # type: ignore[attr-defined]
            try:
                context.account_ref, _ = await authenticate_until(context.api_key)
            except Unauthenticated as exc:  # before the body is read: nothing is parsed
                log.info("graphql UNAUTHENTICATED: %s", exc.message)
                return unauthenticated(exc)
            except Exception as exc:
                if outages.report(exc):  # the key cannot be checked: PostgreSQL is down
                    return service_unavailable()
                raise
        plain = await _plain_operation(request, self.decode_json)
        if plain is not None:
            return await self._execute_plain(request, adapter, context, plain)
        return await super().execute_request(request, context, root_value)  # type: ignore[misc]

    async def _execute_plain(self, request: Request, adapter: Any, context: Context,
                             data: GraphQLRequestData) -> Response:
        """One JSON-bodied query or mutation, answered as Strawberry's view answers it.

        Strawberry's `run` sniffs the content type with `email.message`, looks for a streaming
        transport by walking every header, and checks the result against runtime protocols:
        ~130 µs of a `pal(palId)` request that are not GraphQL's own (docs/benchmarks.md).
        The execution, its HTTP errors, the result's processing and the response are the view's.
        """
        sub_response = context.response
        try:
            result = await self.execute_single(request, adapter, sub_response, context, None, data)
        except HTTPException as exc:
            return Response(exc.reason, status_code=exc.status_code, media_type=MediaType.TEXT)
        response_data = await self.process_result(request=request, result=result)  # type: ignore[attr-defined]
        return self.create_response(response_data, sub_response)

    async def execute_single(self, request: Any, request_adapter: Any, sub_response: Any, context: Any,
                             root_value: Any, request_data: GraphQLRequestData) -> Any:
        """Strawberry's, except that an operation answered with one JSON document is a query (or,
        over POST, a mutation): Strawberry also let a subscription through, and graphql-core's
        `execute` failed on it with an 'Unexpected error' (streamed subscriptions, asked for
        with an Accept header, go through `schema.stream` instead and are unchanged)."""
        method = request_adapter.method
        try:
            return await self.schema.execute(  # type: ignore[attr-defined]
                request_data.query, root_value=root_value, variable_values=request_data.variables,
                context_value=context, operation_name=request_data.operation_name,
                allowed_operation_types=_ONE_ANSWER.get(method, frozenset()),
                operation_extensions=request_data.extensions)
        except CannotGetOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason()) from exc
        except InvalidOperationTypeError as exc:
            raise HTTPException(400, exc.as_http_error_reason(method)) from exc
        except MissingQueryError as exc:
            raise HTTPException(400, "No GraphQL query found in the request") from exc

    def encode_json(self, data: object) -> bytes:
        return msgspec.json.encode(data)

    def create_response(self, response_data: Any, sub_response: Any) -> Response:
        response = super().create_response(response_data, sub_response)  # type: ignore[misc]
        if _unavailable_result(response_data):  # nothing came back because PostgreSQL/Redis is down
            response.status_code = 503
            response.headers.update(outages.retry_after_headers())
        return response

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        if not self.is_websocket_request(request):  # type: ignore[attr-defined]
            return await super().run(request, context, root_value)  # type: ignore[misc]
        if outages.is_down():  # PostgreSQL or Redis is down: come back later
            await request.accept(subprotocols=await self.pick_websocket_subprotocol(request))  # type: ignore[attr-defined]
            await request.close(code=TRY_AGAIN_LATER, reason=UNAVAILABLE_REASON)
            return request
        slot = PENDING.take(get_settings().max_unauthenticated_websockets)
        if slot is None:
            log.info("graphql websocket: %d not yet authenticated already; closing 1013", PENDING.count)
            await request.accept(subprotocols=await self.pick_websocket_subprotocol(request))  # type: ignore[attr-defined]
            await request.close(code=1013, reason="Too many unauthenticated connections; try again later")
            return request
        if context is not UNSET and hasattr(context, "pending_slot"):
            context.pending_slot = slot
        try:
            return await super().run(request, context, root_value)  # type: ignore[misc]
        finally:
            slot.release()
