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
stays open.

Each client has its own Redis subscription and a bounded send queue: a client that reads
too slowly is closed with 1008 and never slows the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from litestar import WebSocket, websocket
from litestar.exceptions import WebSocketDisconnect
from redis.exceptions import RedisError

from app import outages
from app.domain.errors import DomainError, NotFound, Unauthenticated
from app.services import conversations as conversation_service
from app.services import media_relay
from app.services.accounts import authenticate
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
        account = await authenticate(socket.headers.get("x-api-key"))
        return await conversation_service.stream_target(account.id, conversation_id)
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
    """One stream client: its send queue and the three tasks that serve it."""

    def __init__(self, socket: WebSocket, conversation_id: str) -> None:
        self.socket = socket
        self.conversation_id = conversation_id
        self.queue: asyncio.Queue[str | bytes] = asyncio.Queue(maxsize=SEND_QUEUE)
        self.transport = _transport_of(socket)

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
            if message.get("bytes") is not None:
                problem = await self._voice(message["bytes"])
            else:
                problem = await self._text(message.get("text") or "")
            if problem and not self.offer(error_message(problem)):
                return CLOSE_TOO_SLOW, "Too slow: the client did not keep up with the stream."

    async def _voice(self, pcm: bytes) -> str | None:
        problem = media_relay.valid_pcm(pcm)
        if problem:
            return problem[0].upper() + problem[1:] + "."
        try:
            await media_relay.publish_voice(self.conversation_id, pcm)
        except (RedisError, OSError) as exc:
            outages.report(exc, outages.REDIS)
            return "The audio frame could not be delivered (live media unavailable)."
        return None

    async def _text(self, text: str) -> str | None:
        parsed = parse_client_text(text)
        if isinstance(parsed, str):
            return parsed
        try:
            await media_relay.publish_command(self.conversation_id, parsed)
        except (RedisError, OSError) as exc:
            outages.report(exc, outages.REDIS)
            return "The command could not be delivered (live media unavailable)."
        return None


@websocket(STREAM_PATH)
async def conversation_stream(socket: WebSocket, conversation_id: str) -> None:
    target = await _refusal(socket, conversation_id)
    await socket.accept()
    if isinstance(target, tuple):
        await socket.close(code=target[0], reason=target[1])
        return
    client = _Client(socket, target["conversation_id"])
    outcome: tuple[int, str] = (CLOSE_UNAVAILABLE, "")
    try:
        async with media_relay.listen(target["conversation_id"]) as feed:
            client.offer(started_message(target["conversation_id"]))
            tasks = [asyncio.create_task(client.relay(feed)), asyncio.create_task(client.sender()),
                     asyncio.create_task(client.receiver())]
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
