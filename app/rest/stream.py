"""GET /v2/conversations/{conversation_id}/stream: a conversation's meeting, live, over a websocket.

The API key is the ``x-api-key`` header. It and the conversation are checked before the
socket is accepted (nothing is subscribed for a stranger); the socket is then accepted only
to say why it closes: 4403 (missing, wrong or another account's key), 4404 (no such
conversation), 1013 (PostgreSQL or Redis unreachable).

Server -> client: ``{"type":"started","conversation_id","sample_rate":16000,"encoding":"pcm_s16le",
"channels":1}`` once, then text frames (the events channel: transcript, chat, status) and
binary frames (the meeting's audio, <= 100 ms each) as the worker publishes them.

Client -> server: binary frames are the PAL's voice (16 kHz mono s16le, even length,
<= 3200 bytes); text frames ``{"type":"say","text"}``, ``{"type":"chat","text"}``,
``{"type":"clear"}``. A malformed frame gets ``{"type":"error","message"}`` and the socket
stays open; so do ``say`` / ``chat`` and voice frames while the bot is not in the call (REST
answers 409 then; voice frames get at most one error a second).

The key is re-checked with REST's cache rule (app/services/accounts.py, AUTH_CACHE_SECONDS):
on each client frame and whenever its cache entry expires, as GraphQL sockets do; a rotated or
revoked key closes the stream with 4403.

Each client has its own Redis subscription and a bounded send queue: a client that reads
too slowly is closed with 1008 and never slows the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from typing import Any

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from redis.exceptions import RedisError

from app import outages
from app.domain.errors import DomainError, NotFound, Unauthenticated
from app.domain.join_state import JoinStatus
from app.services import conversations as conversation_service
from app.services import media_relay
from app.services.accounts import authenticate_until
from app.services.joins import conversation_join
from app.services.transcripts import validate_text

log = logging.getLogger(__name__)

STREAM_PATH = "/v2/conversations/{conversation_id:str}/stream"
SEND_QUEUE = 256  # frames waiting for one client (~12 s of 50 ms audio)
SEND_TIMEOUT_SECONDS = 10.0  # one frame that cannot be written this long: the client is too slow
CLOSE_TIMEOUT_SECONDS = 10.0
MAX_TEXT_FRAME = 8192  # characters of one client text frame
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_SLOW = 1008
CLOSE_UNAVAILABLE = 1013
CLOSE_ERROR = 1011
# The key is re-checked when its cache entry expires (as app/graphql/transport.py does).
MIN_RECHECK_SECONDS = 0.5
RECHECK_JITTER_SECONDS = 0.2
RECHECK_RETRY_SECONDS = 2.0  # after PostgreSQL failed to answer
IN_CALL_CACHE_SECONDS = 1.0  # how long the join's status read for say / chat / voice is trusted
VOICE_ERROR_EVERY_SECONDS = 1.0  # voice frames refused while not in the call: one error per second
NOT_IN_CALL = "The PAL is not in the call (status {status})."
_STATUS_PREFIX = b'{"type":"status"'

_DISCONNECTED = (0, "")  # the client went away: nothing to close


def started_message(conversation_id: str) -> str:
    return json.dumps({"type": "started", "conversation_id": conversation_id,
                       "sample_rate": media_relay.SAMPLE_RATE, "encoding": "pcm_s16le", "channels": 1})


def error_message(message: str) -> str:
    return json.dumps({"type": "error", "message": message})


def parse_client_text(text: str) -> dict[str, Any] | str:
    """A command for the commands channel, or why the frame is refused."""
    if len(text) > MAX_TEXT_FRAME:
        return f"A text frame must be at most {MAX_TEXT_FRAME} characters."
    try:
        data = json.loads(text)
    except ValueError:
        return "A text frame must be JSON: {\"type\": \"say\"|\"chat\"|\"clear\", ...}."
    if not isinstance(data, dict) or data.get("type") not in ("say", "chat", "clear"):
        return "type must be say, chat or clear."
    if data["type"] == "clear":
        return media_relay.command("clear")
    try:
        return media_relay.command(data["type"], validate_text(data.get("text")))
    except DomainError as exc:
        return exc.message


async def _refusal(socket: WebSocket, conversation_id: str) -> tuple[int, str] | dict[str, Any]:
    try:
        account, until = await authenticate_until(socket.headers.get("x-api-key"))
        target = await conversation_service.stream_target(account.id, conversation_id)
        return {**target, "key_until": until}
    except Unauthenticated as exc:
        return CLOSE_FORBIDDEN, exc.message
    except NotFound as exc:
        # Another account's conversation: the key is not good for it (4403); none at all: 4404.
        try:
            if await conversation_service.conversation_exists(conversation_id):
                return CLOSE_FORBIDDEN, "This API key may not open that conversation."
            return CLOSE_NOT_FOUND, exc.message
        except Exception as error:  # noqa: BLE001
            return _failed(conversation_id, error)
    except Exception as exc:  # noqa: BLE001
        return _failed(conversation_id, exc)


def _failed(conversation_id: str, exc: Exception) -> tuple[int, str]:
    if outages.report(exc):
        return CLOSE_UNAVAILABLE, outages.MESSAGE
    log.error("stream %s: cannot open", conversation_id, exc_info=exc)
    return CLOSE_ERROR, "Internal error."


MAX_BUFFERED_BYTES = 256 * 1024  # written to the socket but not yet sent: the client is behind


def _transport_of(socket: WebSocket) -> Any:
    """The server's transport under this websocket, or None.

    uvicorn's websocket send never waits for the network (its write buffer grows without
    bound for a client that does not read), so the sender watches that buffer itself. The
    ASGI send callable is uvicorn's protocol's bound method, under Litestar's wrappers."""
    seen: set[int] = set()
    todo: list[Any] = [socket.send]
    while todo:
        item = todo.pop()
        if id(item) in seen or len(seen) > 50:
            continue
        seen.add(id(item))
        transport = getattr(item, "transport", None)
        if transport is not None and hasattr(transport, "get_write_buffer_size"):
            return transport
        if hasattr(item, "__self__"):
            todo.append(item.__self__)
        if hasattr(item, "__func__"):
            todo.append(item.__func__)
        for cell in getattr(item, "__closure__", None) or ():
            with contextlib.suppress(ValueError):
                if callable(cell.cell_contents) or hasattr(cell.cell_contents, "transport"):
                    todo.append(cell.cell_contents)
        for name in ("_send", "send", "app"):
            inner = getattr(item, name, None) if not isinstance(item, type) else None
            if inner is not None and not isinstance(inner, (str, bytes, int)):
                todo.append(inner)
    return None


class _Client:
    """One stream client: its send queue and the four tasks that serve it."""

    def __init__(self, socket: WebSocket, target: dict[str, Any]) -> None:
        self.socket = socket
        self.conversation_id = target["conversation_id"]
        self.conversation_pk = target["pk"]
        self.api_key = socket.headers.get("x-api-key")
        self.key_until = float(target.get("key_until") or 0.0)
        self.queue: asyncio.Queue[str | bytes] = asyncio.Queue(maxsize=SEND_QUEUE)
        self.transport = _transport_of(socket)
        self.status: str | None = None  # the join's status, trusted until status_until
        self.status_until = 0.0
        self.voice_error_at = 0.0
        self.key_retry_at = 0.0  # PostgreSQL failed to answer: frames do not re-check before this

    def offer(self, item: str | bytes) -> bool:
        try:
            self.queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            return False

    async def relay(self, feed: Any) -> tuple[int, str]:
        try:
            async for message in feed:
                item = message.data if message.kind == "audio" else message.data.decode("utf-8", "replace")
                if message.kind != "audio" and message.data.startswith(_STATUS_PREFIX):
                    self._saw_status(message.data)
                if not self.offer(item):
                    return CLOSE_TOO_SLOW, "Too slow: the client did not keep up with the stream."
        except (RedisError, OSError) as exc:
            outages.report(exc, outages.REDIS)
            return CLOSE_UNAVAILABLE, "The live stream was interrupted; reconnect."
        return CLOSE_UNAVAILABLE, "The live stream ended; reconnect."

    async def sender(self) -> tuple[int, str]:
        while True:
            item = await self.queue.get()
            try:
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                    if isinstance(item, bytes):
                        await self.socket.send_bytes(item)
                    else:
                        await self.socket.send_text(item)
                    # Back-pressure: wait while the client has not taken what was written.
                    while self.transport is not None and \
                            self.transport.get_write_buffer_size() > MAX_BUFFERED_BYTES:
                        if self.transport.is_closing():
                            return _DISCONNECTED
                        await asyncio.sleep(0.02)
            except TimeoutError:
                return CLOSE_TOO_SLOW, "Too slow: the client did not keep up with the stream."
            except (WebSocketDisconnect, OSError, RuntimeError):
                return _DISCONNECTED

    async def receiver(self) -> tuple[int, str]:
        while True:
            try:
                message = await self.socket.receive()
            except WebSocketDisconnect:
                return _DISCONNECTED
            if message["type"] == "websocket.disconnect":
                return _DISCONNECTED
            revoked = await self._key_revoked()
            if revoked is not None:
                return revoked
            if message.get("bytes") is not None:
                problem = await self._voice(message["bytes"])
            else:
                problem = await self._text(message.get("text") or "")
            if problem and not self.offer(error_message(problem)):
                return CLOSE_TOO_SLOW, "Too slow: the client did not keep up with the stream."

    async def watch_key(self) -> tuple[int, str]:
        """Until the key is no longer valid: re-checked whenever this process' cache entry expires."""
        until = self.key_until
        while True:
            delay = max(until - time.monotonic(), MIN_RECHECK_SECONDS)
            await asyncio.sleep(delay + random.uniform(0, RECHECK_JITTER_SECONDS))
            try:
                _, until = await authenticate_until(self.api_key)
            except Unauthenticated:
                return self._revoked()
            except Exception as exc:  # noqa: BLE001 - PostgreSQL did not answer: keep the stream, retry
                if not outages.report(exc):
                    log.warning("stream %s: could not re-check the API key; retrying", self.conversation_id,
                                exc_info=True)
                until = time.monotonic() + RECHECK_RETRY_SECONDS

    async def _key_revoked(self) -> tuple[int, str] | None:
        """Each client frame: the key, through the cache (a query only when its entry expired)."""
        if time.monotonic() < self.key_retry_at:
            return None
        try:
            _, self.key_until = await authenticate_until(self.api_key)
        except Unauthenticated:
            return self._revoked()
        except Exception as exc:  # noqa: BLE001 - checked again later, and by watch_key
            outages.report(exc)
            self.key_retry_at = time.monotonic() + RECHECK_RETRY_SECONDS
        return None

    def _revoked(self) -> tuple[int, str]:
        log.info("stream %s: its API key is no longer valid; closing 4403", self.conversation_id)
        return CLOSE_FORBIDDEN, "API key revoked"

    def _saw_status(self, data: bytes) -> None:
        """The worker published the bot's status: trust it as the join's for a while."""
        with contextlib.suppress(ValueError, AttributeError):
            status = json.loads(data).get("status")
            if isinstance(status, str):
                self.status, self.status_until = status, time.monotonic() + IN_CALL_CACHE_SECONDS

    async def _not_in_call(self) -> str | None:
        """Why say / chat / voice cannot go to the bot now (REST's 409), or None."""
        if time.monotonic() >= self.status_until:
            try:
                join = await conversation_join(self.conversation_pk)
                self.status = join["status"] if join else "unknown"
                self.status_until = time.monotonic() + IN_CALL_CACHE_SECONDS
            except Exception as exc:  # noqa: BLE001 - PostgreSQL down: the last status known, or let it through
                outages.report(exc)
                self.status_until = time.monotonic() + RECHECK_RETRY_SECONDS
        if self.status is not None and self.status != JoinStatus.IN_CALL:
            return NOT_IN_CALL.format(status=self.status)
        return None

    async def _voice(self, pcm: bytes) -> str | None:
        problem = media_relay.pcm_problem(pcm)
        if problem:
            return problem
        problem = await self._not_in_call()
        if problem:
            if time.monotonic() - self.voice_error_at < VOICE_ERROR_EVERY_SECONDS:
                return None  # dropped; the client was told less than a second ago
            self.voice_error_at = time.monotonic()
            return problem
        return await media_relay.deliver_voice(self.conversation_id, pcm)

    async def _text(self, text: str) -> str | None:
        parsed = parse_client_text(text)
        if isinstance(parsed, str):
            return parsed
        if parsed["type"] != "clear":
            problem = await self._not_in_call()
            if problem:
                return problem
        return await media_relay.deliver_command(self.conversation_id, parsed)


@websocket(STREAM_PATH)
async def conversation_stream(socket: WebSocket, conversation_id: str) -> None:
    target = await _refusal(socket, conversation_id)
    await socket.accept()
    if isinstance(target, tuple):
        await socket.close(code=target[0], reason=target[1])
        return
    client = _Client(socket, target)
    outcome: tuple[int, str] = (CLOSE_UNAVAILABLE, "")
    try:
        async with media_relay.listen(target["conversation_id"]) as feed:
            client.offer(started_message(target["conversation_id"]))
            tasks = [asyncio.create_task(client.relay(feed)), asyncio.create_task(client.sender()),
                     asyncio.create_task(client.receiver()), asyncio.create_task(client.watch_key())]
            try:
                done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                outcome = next(iter(done)).result()
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
    except (RedisError, OSError) as exc:
        outages.report(exc, outages.REDIS)
        outcome = (CLOSE_UNAVAILABLE, "Live media is unavailable; try again in a few seconds.")
    if outcome == _DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(CLOSE_TIMEOUT_SECONDS):
            await socket.close(code=outcome[0], reason=outcome[1][:120])
