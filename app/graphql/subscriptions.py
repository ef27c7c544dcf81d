"""GraphQL subscriptions: live PAL events, join status and conversation status.

Events reach this process through Redis pub/sub (one PubSub connection per API
process, multiplexed by Litestar's ChannelsPlugin). Every subscription subscribes
to its PAL's channel *before* it reads PostgreSQL, so nothing published in
between is lost; the log in PostgreSQL fills any gap (reconnects, Redis restarts).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
import strawberry
from litestar.channels import ChannelsPlugin
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app import outages
from app.config import get_settings
from app.domain.errors import ValidationFailed
from app.graphql.activity import Conversation, Join, TranscriptEntry, serial_id
from app.graphql.context import Info
from app.graphql.events import PalEvent, PalSnapshot, PalStreamItem
from app.graphql.multiplex import RESYNC, Feed, Member, decode_event, missed_events
from app.services.conversations import get_conversation
from app.domain.join_state import status_of_event
from app.keys import conversation_events_channel
from app.keys import pal_events_channel as channel
from app.services import conversations as conversation_service
from app.services.joins import current_state, get_join
from app.services.pals import owned_pal_pk

log = logging.getLogger(__name__)

# Per-subscriber buffer; a client this far behind loses the oldest and can page the log.
MAX_BACKLOG = 1000


# The PubSub connection is gone (Redis stopped, restarted, or the connection was killed).
_CONNECTION_LOST = (RedisConnectionError, RedisTimeoutError, OSError)


class LivePubSubBackend(RedisChannelsPubSubBackend):
    """Redis pub/sub that outlives a Redis restart: reconnects, resubscribes, asks for a resync.

    Subscribing and unsubscribing never fail because Redis is down: the channels wanted are
    kept and subscribed when the connection is back (then followed by a resync), so the
    plugin's idea of who listens to what never drifts from Redis's. The outage itself goes
    to app/outages.py, which logs it once and has the GraphQL websockets closed with 1013.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # redis-py's PubSub opens its connection lazily and without a lock: two first
        # subscriptions at once (one socket, two PALs) each opened one, and the reader
        # then followed only the second, so the other channel's events stalled after one.
        self._subscribe_lock = asyncio.Lock()

    async def subscribe(self, channels: Iterable[str]) -> None:
        channels = list(channels)
        async with self._subscribe_lock:
            try:
                await super().subscribe(channels)
            except _CONNECTION_LOST as exc:
                # Wanted all the same: stream_events reconnects, subscribes them and resyncs.
                pub_sub = self._pub_sub
                wanted = pub_sub._normalize_keys(dict.fromkeys(channels))
                pub_sub.channels.update(wanted)
                pub_sub.pending_unsubscribe_channels.difference_update(wanted)
                self._has_subscribed.set()
                outages.report(exc, outages.REDIS)

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        channels = list(channels)
        async with self._subscribe_lock:
            try:
                await super().unsubscribe(channels)
            except _CONNECTION_LOST as exc:
                # Forget them here, or the next connection would subscribe them again.
                pub_sub = self._pub_sub
                for name in pub_sub._normalize_keys(dict.fromkeys(channels)):
                    pub_sub.channels.pop(name, None)
                    pub_sub.pending_unsubscribe_channels.discard(name)
                if not pub_sub.channels:
                    self._has_subscribed.clear()
                outages.report(exc, outages.REDIS)

    async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        delay = 0.2
        while True:
            try:
                async for item in super().stream_events():
                    delay = 0.2
                    yield item
            except (RedisError, OSError, RuntimeError) as exc:
                # RuntimeError: redis-py's "pubsub connection not set", after a first subscribe failed.
                if isinstance(exc, RuntimeError) and self._pub_sub.connection is not None:
                    raise
                if isinstance(exc, (*_CONNECTION_LOST, RuntimeError)):
                    outages.report(exc, outages.REDIS)  # a WARNING only if Redis does not answer
                else:
                    log.warning("live events: Redis error (%s); reconnecting", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                if await self._reconnect():
                    outages.recovered(outages.REDIS)
                    for name in list(self._pub_sub.channels):
                        yield (name.decode() if isinstance(name, bytes) else name), RESYNC

    async def _reconnect(self) -> bool:
        try:
            async with self._subscribe_lock:  # a subscribe now would also try to reconnect
                pub_sub = self._pub_sub
                if pub_sub.connection is None:  # never connected: subscribing opens the connection
                    if pub_sub.channels:
                        await pub_sub.subscribe(*pub_sub.channels)
                else:
                    await pub_sub.connection.connect()  # redis-py resubscribes every channel on connect
            return True
        except (RedisError, OSError):
            return False

    async def on_shutdown(self) -> None:
        await super().on_shutdown()
        await self._redis.aclose()


def channels_plugin() -> ChannelsPlugin:
    """The per-process fan-out: one Redis PubSub, one in-memory queue per subscription."""
    # Named, so an operator (or a test) can find this process's PubSub in CLIENT LIST.
    # No health_check_interval: its PING is read by whichever coroutine sends a command,
    # racing the reader task on the one connection. TCP keepalive finds dead peers instead.
    client = aioredis.from_url(get_settings().redis_url, socket_connect_timeout=2, socket_keepalive=True,
                               client_name=f"pal-live-{os.getpid()}")
    return ChannelsPlugin(
        backend=LivePubSubBackend(redis=client, stream_sleep_no_subscriptions=50),
        arbitrary_channels_allowed=True,
        create_ws_route_handlers=False,
        subscriber_max_backlog=MAX_BACKLOG,
        subscriber_backlog_strategy="dropleft",
    )


@asynccontextmanager
async def _live(info: Info, name: str) -> AsyncIterator[AsyncIterator[dict[str, Any] | None]]:
    """Subscribe to one channel; yields decoded events, or None for 'resync from PostgreSQL'."""
    plugin: ChannelsPlugin | None = info.context.channels
    if plugin is None:
        raise RuntimeError("live events need the ChannelsPlugin in the GraphQL context")
    async with plugin.start_subscription([name]) as subscriber:
        yield _decode(subscriber.iter_events())


async def _decode(raw_events: AsyncIterator[bytes]) -> AsyncIterator[dict[str, Any] | None]:
    async for raw in raw_events:
        if raw == RESYNC:
            yield None
            continue
        event = decode_event(raw)
        if event is not None:
            yield event


def _about(event: dict[str, Any] | None, *, join_id: int | None, conversation_id: str | None = None) -> bool:
    """Whether a live event (None = resync) concerns the given join or conversation."""
    if event is None:
        return True
    payload = event.get("payload")
    if not isinstance(payload, dict):
        return False
    return (join_id is not None and payload.get("join_id") == join_id) or (
        conversation_id is not None and payload.get("conversation_id") == conversation_id)


async def pal_events(info: Info, pal_id: strawberry.ID, after: int | None = None) -> AsyncGenerator[PalStreamItem, None]:
    """A PalSnapshot first, then the events after `after` (if given), then events as they happen."""
    account = await info.context.account()
    if after is not None and after < 0:
        raise ValidationFailed("after must be an event id (0 or more).", field="after")
    pal_pk = await owned_pal_pk(account.id, pal_id)
    hook = info.context.live
    if isinstance(hook, Feed):  # a multiplexed group's one execution per live event (app/graphql/multiplex.py)
        async for event in hook.events():
            yield PalEvent.from_view(event)
        return
    if isinstance(hook, Member):  # one subscriber over websockets: its history here, live events from its group
        await hook.join(channel(pal_id), account.id, pal_pk, pal_id, info.context)  # listening before the read
        state = await current_state(pal_pk)
        yield PalSnapshot.from_state(pal_id, state)
        hook.high = after if after is not None else (state["last_event_id"] or 0)
        if after is not None:
            async for view in missed_events(pal_pk, pal_id, after):
                hook.remember(view["id"])
                yield PalEvent.from_view(view)
        return
    async with _live(info, channel(pal_id)) as live:
        state = await current_state(pal_pk)
        yield PalSnapshot.from_state(pal_id, state)
        # Ids already sent from PostgreSQL; the same event may also arrive live.
        sent: set[int] = set()
        high = after if after is not None else (state["last_event_id"] or 0)
        if after is not None:
            async for view in missed_events(pal_pk, pal_id, after):
                sent.add(view["id"])
                high = max(high, view["id"])
                yield PalEvent.from_view(view)
        async for event in live:
            if event is None:  # Redis came back: fetch from the log what pub/sub may have dropped
                async for view in missed_events(pal_pk, pal_id, high):
                    if view["id"] not in sent:
                        sent.add(view["id"])
                        high = max(high, view["id"])
                        yield PalEvent.from_view(view)
                continue
            if event["id"] in sent:
                continue
            high = max(high, event["id"])
            yield PalEvent.from_view(event)


def _status_key(view: dict[str, Any]) -> tuple[Any, ...]:
    return (view.get("status"), view.get("reason"), view.get("updated_at"), view.get("join_id"))


def _as_of(view: dict[str, Any], event: dict[str, Any] | None) -> dict[str, Any]:
    """The re-read row, but with the status the event reports.

    By the time we re-read, the join may have moved on (joining -> in_call in
    a second); taking the status from the event reports every transition.
    """
    if event is None:
        return view
    payload = event["payload"]
    status = status_of_event(event["kind"], payload.get("status"))
    if not status:
        return view
    return {**view, "status": status, "reason": payload.get("reason")}


async def join_status(info: Info, join_id: strawberry.ID) -> AsyncGenerator[Join, None]:
    """The join now, then again each time its status changes."""
    join_id = serial_id(join_id, "Join", "join_id")  # type: ignore[assignment]
    account = await info.context.account()
    view = await get_join(account.id, join_id)
    async with _live(info, channel(view["pal_id"])) as live:
        view = await get_join(account.id, join_id)  # re-read: a change may have happened before we subscribed
        yield Join.from_view(view)
        last = _status_key(view)
        async for event in live:
            if _about(event, join_id=join_id):
                view = _as_of(await get_join(account.id, join_id), event)
                if _status_key(view) != last:
                    last = _status_key(view)
                    yield Join.from_view(view)


async def conversation_status(info: Info, conversation_id: strawberry.ID) -> AsyncGenerator[Conversation, None]:
    """The conversation now, then again each time its join's status changes."""
    account = await info.context.account()
    view = await get_conversation(account.id, conversation_id)
    async with _live(info, channel(view["pal_id"])) as live:
        view = await get_conversation(account.id, conversation_id)
        yield Conversation.from_view(view)
        last = _status_key(view)
        async for event in live:
            if _about(event, join_id=view["join_id"], conversation_id=conversation_id):
                view = _as_of(await get_conversation(account.id, conversation_id), event)
                if _status_key(view) != last:
                    last = _status_key(view)
                    yield Conversation.from_view(view)


def _live_line(raw: bytes) -> dict[str, Any] | None:
    """A transcript entry view from the conversation's events channel (final lines and chats only)."""
    try:
        event = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("text"), str):
        return None
    if event.get("type") == "transcript" and event.get("final"):
        return {"id": None, "kind": "speech", "speaker": str(event.get("speaker") or ""), "text": event["text"],
                "at": event.get("at"), "self": bool(event.get("self"))}
    if event.get("type") == "chat":
        return {"id": None, "kind": "chat", "speaker": str(event.get("sender") or ""), "text": event["text"],
                "at": event.get("at"), "self": bool(event.get("self"))}
    return None


def _line_key(view: dict[str, Any]) -> tuple[Any, ...]:
    return (view["kind"], view["speaker"], view["text"].strip(), view.get("at"))


async def conversation_transcript(info: Info, conversation_id: strawberry.ID) -> AsyncGenerator[TranscriptEntry, None]:
    """The stored transcript first (oldest first), then each final line and chat message as it happens."""
    account = await info.context.account()
    target = await conversation_service.stream_target(account.id, conversation_id)
    plugin: ChannelsPlugin | None = info.context.channels
    if plugin is None:
        raise RuntimeError("live lines need the ChannelsPlugin in the GraphQL context")
    # Subscribed before the stored lines are read: a line is then sent stored, live or both
    # (a line both stored and published since the read is sent once).
    async with plugin.start_subscription([conversation_events_channel(target["conversation_id"])]) as subscriber:
        seen: set[tuple[Any, ...]] = set()
        after = 0
        while True:
            page = await conversation_service.transcript(account.id, conversation_id, after=after)
            for view in page["entries"]:
                seen.add(_line_key(view))
                yield TranscriptEntry.from_view(view)
            if not page["has_more"] or not page["entries"]:
                break
            after = page["entries"][-1]["id"]
        async for raw in subscriber.iter_events():
            view = _live_line(raw) if raw != RESYNC else None
            if view is None:
                continue
            key = _line_key(view)
            if key in seen:
                seen.discard(key)
                continue
            yield TranscriptEntry.from_view(view)


@strawberry.type
class Subscription:
    pal_events: AsyncGenerator[PalStreamItem, None] = strawberry.subscription(
        resolver=pal_events, description="Every event of one PAL: a snapshot first, then the live stream.")
    join_status: AsyncGenerator[Join, None] = strawberry.subscription(
        resolver=join_status, description="One join's status, now and on every change.")
    conversation_status: AsyncGenerator[Conversation, None] = strawberry.subscription(
        resolver=conversation_status, description="One API conversation's status, now and on every change.")
    conversation_transcript: AsyncGenerator[TranscriptEntry, None] = strawberry.subscription(
        resolver=conversation_transcript,
        description="A conversation's transcript: the stored lines first, then each new line as it happens.")
