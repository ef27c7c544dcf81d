"""All Redis I/O of the media bridge: one bot run's live audio, transcript and commands.

The worker that runs a conversation's bot and every API process with stream clients meet
on four pub/sub channels (app/keys.py, conversation_*):

* audio (binary, worker -> API): the meeting's remote audio, 16 kHz mono s16le frames;
* events (JSON, worker -> API): ``{"type":"transcript","speaker","text","final","at","line_id"}``,
  ``{"type":"chat","sender","text","at","self"}``, ``{"type":"status","status","reason"}``,
  ``{"type":"notice","kind","detail"}`` (e.g. captions_unavailable: the PAL cannot hear);
* voice (binary, API -> worker): the PAL's voice to play, same PCM format;
* commands (JSON, API -> worker): ``{"type":"say","text"}``, ``{"type":"chat","text"}``,
  ``{"type":"clear"}``.

Worker side, ``WorkerRelay`` gives the bot's MediaChannels their callbacks (workers/joins.py
builds the MediaChannels: app/ never imports workers/). The callbacks are plain functions
that only put onto bounded queues; one task publishes, another stores the transcript, so the
bot is never blocked and never sees an exception. A full queue or Redis / PostgreSQL down
is counted in ``stats``, not fatal. ``pump_commands`` feeds voice and commands to the bot.

API side, ``listen`` is one Redis subscription per stream client, and ``publish_voice`` /
``publish_command`` send what clients, REST and GraphQL ask for.

Pub/sub is at most once: a listener that is not subscribed misses what is published. The
transcript in PostgreSQL (app/services/transcripts.py) is what lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from app import outages
from app.clock import utcnow
from app.config import get_settings
from app.domain.timefmt import iso_z
from app.keys import (
    conversation_audio_channel, conversation_commands_channel, conversation_events_channel,
    conversation_voice_channel,
)
from app.redis_client import redis
from app.services import transcripts

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
MAX_FRAME_BYTES = 3200  # 100 ms of 16 kHz mono s16le
MAX_COMMAND_BYTES = 8192  # one JSON command on the commands channel
OUTBOX_SIZE = 500  # worker -> Redis: ~25 s of 50 ms audio frames
STORE_QUEUE_SIZE = 500  # lines waiting for PostgreSQL
RECONNECT_MAX_SECONDS = 2.0
SUBSCRIBE_TIMEOUT_SECONDS = 5.0


# --- pure helpers (unit-tested) ------------------------------------------------------------

def valid_pcm(data: bytes) -> str | None:
    """Why `data` is not one PCM frame (16 kHz mono s16le, at most 100 ms), or None when it is."""
    if not data:
        return "an audio frame must not be empty"
    if len(data) % 2:
        return "an audio frame must have an even number of bytes (16-bit samples)"
    if len(data) > MAX_FRAME_BYTES:
        return f"an audio frame must be at most {MAX_FRAME_BYTES} bytes (100 ms of 16 kHz mono s16le)"
    return None


def _at(value: Any) -> str | None:
    return iso_z(value) if isinstance(value, datetime) else None


def caption_event(caption: Any) -> dict[str, Any]:
    """The events channel's form of a workers.meet_bot.channels.Caption."""
    return {"type": "transcript", "speaker": str(caption.speaker), "text": str(caption.text),
            "final": bool(caption.final), "at": _at(caption.at), "line_id": str(caption.line_id or "")}


def chat_event(message: Any) -> dict[str, Any]:
    """The events channel's form of a workers.meet_bot.channels.ChatMessage."""
    return {"type": "chat", "sender": str(message.sender), "text": str(message.text), "at": _at(message.at),
            "self": bool(message.self)}


def status_event(status: str, reason: str | None) -> dict[str, Any]:
    return {"type": "status", "status": str(status), "reason": reason}


def command(kind: str, text: str | None = None) -> dict[str, Any]:
    """A commands-channel message: say / chat carry `text`, clear carries nothing."""
    if kind == "clear":
        return {"type": "clear"}
    if kind not in ("say", "chat"):
        raise ValueError(f"unknown command {kind!r}")
    return {"type": kind, "text": text or ""}


def parse_command(raw: bytes | str) -> tuple[str, str | None] | None:
    """("say", text) / ("chat", text) / ("clear", None) from the commands channel; None if malformed."""
    if len(raw) > MAX_COMMAND_BYTES:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    kind = data.get("type")
    if kind == "clear":
        return ("clear", None)
    text = data.get("text")
    if kind in ("say", "chat") and isinstance(text, str) and text.strip():
        return (kind, transcripts.bounded(text))
    return None


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


# --- publishing --------------------------------------------------------------------------

async def publish_voice(conversation_id: str, pcm: bytes) -> int:
    """The PAL's voice for the worker; the number of workers listening (0: no bot running)."""
    return int(await redis().publish(conversation_voice_channel(conversation_id), pcm))


async def publish_command(conversation_id: str, message: dict[str, Any]) -> int:
    """A say / chat / clear command for the worker; the number of workers listening."""
    return int(await redis().publish(conversation_commands_channel(conversation_id), encode(message)))


def pcm_problem(pcm: bytes) -> str | None:
    """valid_pcm's answer as a sentence for a client, or None for a good frame."""
    problem = valid_pcm(pcm)
    return problem[0].upper() + problem[1:] + "." if problem else None


async def deliver_voice(conversation_id: str, pcm: bytes) -> str | None:
    """Hand a client's (or an agent's) checked voice frame to the bot; an error for the client, or None."""
    try:
        await publish_voice(conversation_id, pcm)
    except (RedisError, OSError) as exc:
        outages.report(exc, outages.REDIS)
        return "The audio frame could not be delivered (live media unavailable)."
    return None


async def deliver_command(conversation_id: str, message: dict[str, Any]) -> str | None:
    """Hand a client's (or an agent's) parsed say/chat/clear to the bot; an error for the client, or None."""
    try:
        await publish_command(conversation_id, message)
    except (RedisError, OSError) as exc:
        outages.report(exc, outages.REDIS)
        return "The command could not be delivered (live media unavailable)."
    return None


async def publish_audio(conversation_id: str, pcm: bytes) -> int:
    return int(await redis().publish(conversation_audio_channel(conversation_id), pcm))


async def publish_event(conversation_id: str, event: dict[str, Any]) -> int:
    return int(await redis().publish(conversation_events_channel(conversation_id), encode(event)))


# --- subscribing ----------------------------------------------------------------------------

_listen_client: aioredis.Redis | None = None


def _subscriber_client() -> aioredis.Redis:
    """Pub/sub connections wait indefinitely for messages: no socket_timeout (the shared
    client's 5 s would end an idle subscription), keepalive to notice a dead peer."""
    global _listen_client
    if _listen_client is None:
        _listen_client = aioredis.from_url(get_settings().redis_url, socket_connect_timeout=2,
                                           socket_keepalive=True)
    return _listen_client


async def close() -> None:
    global _listen_client
    if _listen_client is not None:
        client, _listen_client = _listen_client, None
        with contextlib.suppress(Exception):
            await client.aclose()


@dataclass(frozen=True)
class Message:
    kind: str  # "audio" | "event" (API side) or "voice" | "command" (worker side)
    data: bytes


@contextlib.asynccontextmanager
async def subscription(channels: dict[str, str]) -> AsyncIterator[AsyncIterator[Message]]:
    """Subscribe (before yielding) to `channels` ({redis channel: kind}); yields the messages.

    Raises Redis' errors when the subscription cannot be made or breaks."""
    pubsub = _subscriber_client().pubsub()
    try:
        await pubsub.subscribe(*channels)
        # Redis confirms each channel: from then on nothing published on it is missed.
        early: list[dict[str, Any]] = []
        confirmed = 0
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT_SECONDS):
            while confirmed < len(channels):
                item = await pubsub.get_message(timeout=None)
                if item is None:
                    continue
                if item.get("type") == "subscribe":
                    confirmed += 1
                elif item.get("type") == "message":
                    early.append(item)

        def as_message(item: dict[str, Any]) -> Message:
            name = item["channel"].decode() if isinstance(item["channel"], bytes) else item["channel"]
            data = item["data"] if isinstance(item["data"], bytes) else str(item["data"]).encode()
            return Message(channels.get(name, ""), data)

        async def messages() -> AsyncIterator[Message]:
            for item in early:
                yield as_message(item)
            while True:
                item = await pubsub.get_message(timeout=None)
                if item is not None and item.get("type") == "message":
                    yield as_message(item)

        yield messages()
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()


def listen(conversation_id: str):
    """API side: the conversation's audio ("audio", PCM) and events ("event", JSON bytes)."""
    return subscription({conversation_audio_channel(conversation_id): "audio",
                         conversation_events_channel(conversation_id): "event"})


# --- worker side --------------------------------------------------------------------------

@dataclass
class RelayStats:
    published: int = 0
    publish_errors: int = 0
    dropped: int = 0  # the outbox or the store queue was full
    stored: int = 0
    store_errors: int = 0
    commands: int = 0
    bad_commands: int = 0
    commands_dropped: int = 0


@dataclass
class WorkerRelay:
    """One bot run's end of the bridge: callbacks for the bot, and the command pump.

    ``start()`` before the bot runs, ``await close()`` after it (flushes what is queued, briefly)."""

    conversation_id: str
    conversation_pk: int
    pal_name: str
    clock: Callable[[], datetime] = utcnow
    stats: RelayStats = field(default_factory=RelayStats)

    def __post_init__(self) -> None:
        self._outbox: asyncio.Queue[tuple[str, bytes | str]] = asyncio.Queue(maxsize=OUTBOX_SIZE)
        self._store: asyncio.Queue[tuple[str, str, str, bool, datetime]] = asyncio.Queue(maxsize=STORE_QUEUE_SIZE)
        self._tasks: list[asyncio.Task[None]] = []
        self._audio = conversation_audio_channel(self.conversation_id)
        self._events = conversation_events_channel(self.conversation_id)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._publisher()), asyncio.create_task(self._storer())]

    async def close(self, *, flush_seconds: float = 2.0) -> None:
        """Let the queues drain for up to `flush_seconds`, then stop the tasks."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(flush_seconds):
                await self._outbox.join()
                await self._store.join()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []

    # The bot's callbacks: synchronous, never blocking, never raising.

    def on_audio(self, pcm: bytes) -> None:
        try:
            if isinstance(pcm, (bytes, bytearray)) and valid_pcm(bytes(pcm)) is None:
                self._publish(self._audio, bytes(pcm))
        except Exception:  # noqa: BLE001 - never into the bot
            log.exception("media relay: on_audio")

    def on_caption(self, caption: Any) -> None:
        try:
            self._publish(self._events, encode(caption_event(caption)))
            if caption.final:
                self._keep("speech", caption.speaker, caption.text, False, caption.at)
        except Exception:  # noqa: BLE001
            log.exception("media relay: on_caption")

    def on_chat(self, message: Any) -> None:
        try:
            self._publish(self._events, encode(chat_event(message)))
            self._keep("chat", message.sender, message.text, bool(message.self), message.at)
        except Exception:  # noqa: BLE001
            log.exception("media relay: on_chat")

    def on_self_speech(self, text: str, at: datetime) -> None:
        try:
            event = {"type": "transcript", "speaker": self.pal_name, "text": str(text), "final": True,
                     "at": _at(at), "line_id": "", "self": True}
            self._publish(self._events, encode(event))
            self._keep("speech", self.pal_name, text, True, at)
        except Exception:  # noqa: BLE001
            log.exception("media relay: on_self_speech")

    def on_status(self, status: str, reason: str | None) -> None:
        try:
            self._publish(self._events, encode(status_event(status, reason)))
        except Exception:  # noqa: BLE001
            log.exception("media relay: on_status")

    def on_problem(self, kind: str, detail: str) -> None:
        """Something the PAL cannot do in this meeting (captions_unavailable, ...): a `notice` event."""
        try:
            self._publish(self._events, encode({"type": "notice", "kind": str(kind), "detail": str(detail)[:300]}))
        except Exception:  # noqa: BLE001
            log.exception("media relay: on_problem")

    def _publish(self, channel: str, payload: bytes | str) -> None:
        try:
            self._outbox.put_nowait((channel, payload))
        except asyncio.QueueFull:
            self.stats.dropped += 1

    def _keep(self, kind: str, speaker: str, text: str, is_self: bool, at: Any) -> None:
        if not isinstance(at, datetime):
            at = self.clock()
        try:
            self._store.put_nowait((kind, str(speaker or ""), str(text or ""), is_self, at))
        except asyncio.QueueFull:
            self.stats.dropped += 1

    async def _publisher(self) -> None:
        while True:
            channel, payload = await self._outbox.get()
            try:
                await redis().publish(channel, payload)
                self.stats.published += 1
            except (RedisError, OSError) as exc:
                self.stats.publish_errors += 1
                if self.stats.publish_errors in (1, 10, 100) or self.stats.publish_errors % 1000 == 0:
                    log.warning("conversation %s: media publish failed (%d so far): %r",
                                self.conversation_id, self.stats.publish_errors, exc)
            finally:
                self._outbox.task_done()

    async def _storer(self) -> None:
        while True:
            kind, speaker, text, is_self, at = await self._store.get()
            try:
                await transcripts.append(self.conversation_pk, kind, speaker, text, at=at, now=self.clock(),
                                         is_self=is_self)
                self.stats.stored += 1
            except Exception as exc:  # noqa: BLE001 - PostgreSQL down: counted, the call goes on
                self.stats.store_errors += 1
                if self.stats.store_errors in (1, 10, 100) or self.stats.store_errors % 1000 == 0:
                    log.warning("conversation %s: transcript store failed (%d so far): %r",
                                self.conversation_id, self.stats.store_errors, exc)
            finally:
                self._store.task_done()

    async def pump_commands(self, deliver: Callable[[str, Any], bool]) -> None:
        """Until cancelled: voice and commands from Redis to `deliver(kind, value)`.

        kind is "audio" (PCM bytes), "say" / "chat" (text) or "clear" (None); `deliver`
        returns False when the bot's queue was full (counted). Reconnects after Redis errors."""
        channels = {conversation_voice_channel(self.conversation_id): "voice",
                    conversation_commands_channel(self.conversation_id): "command"}
        delay = 0.2
        while True:
            try:
                async with subscription(channels) as messages:
                    delay = 0.2
                    async for message in messages:
                        self._deliver(message, deliver)
            except (RedisError, OSError) as exc:
                log.warning("conversation %s: command subscription lost (%r); retrying", self.conversation_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_SECONDS)

    def _deliver(self, message: Message, deliver: Callable[[str, Any], bool]) -> None:
        if message.kind == "voice":
            parsed: tuple[str, Any] | None = ("audio", message.data) if valid_pcm(message.data) is None else None
        else:
            parsed = parse_command(message.data)
        if parsed is None:
            self.stats.bad_commands += 1
            return
        try:
            accepted = deliver(*parsed)
        except Exception:  # noqa: BLE001
            log.exception("conversation %s: delivering a command failed", self.conversation_id)
            accepted = False
        if accepted:
            self.stats.commands += 1
        else:
            self.stats.commands_dropped += 1
