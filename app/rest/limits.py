"""Bounds on what one HTTP request may cost before any handler runs.

* JSON nesting: every JSON request body (REST and POST /graphql) and GraphQL's GET
  `variables` / `extensions` are scanned for [ and { nesting *before* a recursive parser
  sees them; deeper than MAX_JSON_DEPTH is a 400 naming the limit. Python's parsers, and
  much that walks their result (deepcopy, the jsonb encoder, GraphQL's JSON scalar), recurse
  once per level, so ~1000 levels used to end in a RecursionError and a 500.
* Slow clients: `python -m app serve` runs uvicorn with `TimedHttpToolsProtocol`, which
  closes a connection whose request line and headers take longer than
  HTTP_HEADER_TIMEOUT_SECONDS, and answers 408 (then closes) when the body takes longer
  than HTTP_BODY_TIMEOUT_SECONDS plus one second per HTTP_BODY_MIN_BYTES_PER_SECOND bytes
  received. uvicorn has a keep-alive timeout but none for reading a request, so a client
  sending one byte every few seconds held its connection (and a slot) for ever.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any
from urllib.parse import parse_qsl

from litestar import Request
from litestar.enums import RequestEncodingType, ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.config import get_settings
from app.domain.errors import ValidationFailed

log = logging.getLogger(__name__)

# A whole string (escapes included), an opening bracket, a closing one, or a lone quote
# (an unterminated string: the parser will refuse the body, nothing more to count).
_JSON_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[{]|[\]}]|"', re.DOTALL)
_OPENING = frozenset(b"[{")
_QUERY_JSON_PARAMS = ("variables", "extensions")  # GraphQL over GET


def json_nesting_exceeds(data: bytes, limit: int) -> bool:
    """Whether the JSON text in `data` nests [ and { deeper than `limit`.

    Iterative and linear; brackets inside strings do not count. Invalid JSON is not
    reported here (the parser does that) but never makes this scan slow or recursive.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # the common case: too few brackets to nest that deep at all
    depth = 0
    for match in _JSON_TOKEN.finditer(data):
        token = match.group()
        first = token[0]
        if first in _OPENING:
            depth += 1
            if depth > limit:
                return True
        elif first == 0x22:  # '"'
            if len(token) == 1:
                return False
        elif depth:
            depth -= 1
    return False


def too_deep(what: str, limit: int, field: str) -> ValidationFailed:
    return ValidationFailed(f"{what} is nested deeper than {limit} levels (MAX_JSON_DEPTH).", field=field)


def _media_type(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.split(b";", 1)[0].strip().lower().decode("latin-1")
    return ""


def _body_is_json(scope: Scope) -> bool:
    """A handler with a JSON `data` parameter decodes the body as JSON whatever its
    Content-Type says (Litestar does); other handlers (GraphQL) only a JSON Content-Type."""
    handler = scope.get("route_handler")
    data = handler.parsed_fn_signature.parameters.get("data") if handler is not None else None
    if data is not None:
        media_type = getattr(data.kwarg_definition, "media_type", RequestEncodingType.JSON)
        return media_type == RequestEncodingType.JSON
    media_type = _media_type(scope)
    return media_type == "application/json" or media_type.endswith("+json")


class JsonLimitsMiddleware(ASGIMiddleware):
    """Refuses JSON nested deeper than MAX_JSON_DEPTH before a handler parses it."""

    scopes = (ScopeType.HTTP,)

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        limit = get_settings().max_json_depth
        if scope["method"] in ("GET", "HEAD"):
            query = scope.get("query_string", b"")
            if any(name.encode() in query for name in _QUERY_JSON_PARAMS):
                # latin-1 both ways: the values' bytes as sent, whatever their encoding.
                for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True, encoding="latin-1"):
                    if name in _QUERY_JSON_PARAMS and json_nesting_exceeds(value.encode("latin-1"), limit):
                        raise too_deep(f"The {name} parameter", limit, name)
        elif _body_is_json(scope):
            # Litestar keeps the body in the connection state: the handler reads it from
            # there. Reading it also enforces the route's body size limit (413).
            body = await Request(scope, receive, send).body()
            if json_nesting_exceeds(body, limit):
                raise too_deep("The JSON body", limit, "body")
        await next_app(scope, receive, send)


# --- slow clients ---------------------------------------------------------------

def _timeout_response() -> bytes:
    body = json.dumps({"error": "Request timeout: the request body arrived too slowly.",
                       "code": "REQUEST_TIMEOUT"}).encode()
    return (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body)


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with time limits on reading a request.

    * headers: from the first byte of a request (or the connection's opening) until its
      headers are complete, at most HTTP_HEADER_TIMEOUT_SECONDS; then the connection is
      closed. A new connection that sends nothing is closed after the same time; an idle
      kept-alive one after uvicorn's keep-alive timeout.
    * body: from the end of the headers until the end of the body, at most
      HTTP_BODY_TIMEOUT_SECONDS plus len(received) / HTTP_BODY_MIN_BYTES_PER_SECOND, so
      a large upload at a fair rate is never cut, and a trickle is. Then a 408 when no
      response has started, and the connection is closed either way; the application
      sees a disconnect.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self._header_timeout = settings.http_header_timeout
        self._body_timeout = settings.http_body_timeout
        self._body_min_rate = max(1, settings.http_body_min_rate)
        self._header_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._body_started = 0.0
        self._body_received = 0

    # header phase
    def _arm_header_timer(self) -> None:
        if self._header_timer is None and self._header_timeout > 0:
            self._header_timer = self.loop.call_later(self._header_timeout, self._headers_too_slow)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.flow is not None and self.flow.read_paused:
            # uvicorn stopped reading (a pipelined request waits for the one before): not the client's fault.
            self._arm_header_timer()
            return
        if not self.transport.is_closing():
            log.info("closing %s: request headers not received within %g s", self._peer(), self._header_timeout)
            self.transport.close()

    # body phase
    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_deadline(self) -> float:
        return self._body_started + self._body_timeout + self._body_received / self._body_min_rate

    def _check_body(self) -> None:
        self._body_timer = None
        if self.flow is not None and self.flow.read_paused:
            # uvicorn stopped reading (the application has not taken what it has, or a pipelined
            # request waits): the client cannot send, so it gets a fresh window once reading resumes.
            self._body_started, self._body_received = self.loop.time(), 0
        remaining = self._body_deadline() - self.loop.time()
        if remaining > 0:
            self._body_timer = self.loop.call_later(remaining, self._check_body)
            return
        if self.transport.is_closing():
            return
        log.info("closing %s: request body not received within %g s", self._peer(), self._body_timeout)
        cycle = self.cycle
        if cycle is not None and not cycle.response_started:
            self.transport.write(_timeout_response())
        if cycle is not None and not cycle.response_complete:
            cycle.disconnected = True  # the app's receive() returns http.disconnect; its sends are dropped
            cycle.message_event.set()
        self.transport.close()

    def _peer(self) -> str:
        return "%s:%d" % self.client if self.client else "client"

    # uvicorn hooks
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._body_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm_header_timer()  # bytes of a new request: the header clock runs
        super().data_received(data)

    def on_message_begin(self) -> None:
        self._arm_header_timer()
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        self._body_started = self.loop.time()
        self._body_received = 0
        self._cancel_body_timer()
        if self._body_timeout > 0:
            self._body_timer = self.loop.call_later(self._body_timeout, self._check_body)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_received += len(body)
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._cancel_body_timer()
        super().on_message_complete()

    def handle_websocket_upgrade(self) -> None:
        self._cancel_header_timer()
        self._cancel_body_timer()
        super().handle_websocket_upgrade()


def server_options() -> dict[str, Any]:
    """uvicorn.run keyword arguments for the slow-client limits."""
    settings = get_settings()
    return {
        "http": TimedHttpToolsProtocol,
        "timeout_keep_alive": settings.http_keep_alive,
        "limit_concurrency": settings.http_max_connections or None,
        # A websocket message is bounded like an HTTP body, before uvicorn buffers it.
        "ws_max_size": settings.max_body_bytes,
    }
