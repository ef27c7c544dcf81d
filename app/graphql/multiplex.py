"""Multiplexed `palEvents` subscriptions: each live event is executed once per distinct subscription.

Subscribers whose subscription is the same document, operation name and variables, from the
same account, form a *group* (as Hasura multiplexes live queries). The group holds the one
Redis channel subscription of the PAL and one GraphQL subscription of its own, run through
the schema like any other (limits, validation, error masking): for each event it executes
the selection once, encodes the payload once, and hands the same string to every member's
socket. Before, graphql-core executed the selection and the frame was encoded once per
subscriber: ~0.2 ms of CPU each, 977 ms p50 / 5.6 s p99 for 10,000 watchers of one PAL.

What stays per subscriber is what differs: its snapshot and the events it missed (`after`),
read from PostgreSQL by its own operation (app/graphql/subscriptions.py, `pal_events`),
while the group buffers the live events for it; once that history is sent, the buffer is
flushed without the events the history already had, and the member is live. Different
accounts or variables never share a group, so they never share a result.

Sockets are written by their own writer (app/graphql/transport.py, `enqueue`), with a bounded
queue: a slow socket never delays the others, and one that falls MAX_OUTBOX frames behind is
closed with 1013 (it reconnects and resumes with `after`, docs/live-status.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from contextlib import suppress
from typing import TYPE_CHECKING, Any, Protocol

import msgspec

from app.services.events import events_page

if TYPE_CHECKING:
    from litestar.channels import ChannelsPlugin

log = logging.getLogger(__name__)

# Live frames a member in the middle of its history may hold back (then its socket is too slow).
MAX_PENDING = 1000
# Sent to every subscriber after the Redis connection came back: "you may have missed events".
RESYNC = b'{"resync": true}'
REPLAY_PAGE = 500
# A reconnecting client gets at most this many missed events; the snapshot covers the rest.
REPLAY_MAX = 5000


def decode_event(raw: bytes) -> dict[str, Any] | None:
    """One event from the PAL's channel, or None if it is not one."""
    try:
        event = json.loads(raw)
    except ValueError:
        log.warning("live events: dropped a message that is not JSON: %r", raw[:100])
        return None
    if isinstance(event, dict) and isinstance(event.get("id"), int):
        return event
    return None


async def missed_events(pal_pk: int, pal_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
    """The PAL's events after `after` from PostgreSQL, oldest first, at most REPLAY_MAX."""
    sent = 0
    while sent < REPLAY_MAX:
        views, more = await events_page(pal_pk, pal_id, after=after, first=min(REPLAY_PAGE, REPLAY_MAX - sent))
        for view in views:
            yield view
        sent += len(views)
        if not more or not views:
            return
        after = views[-1]["id"]




class Socket(Protocol):
    """What a group needs of a websocket handler (app.graphql.transport.GuardedTransportWSHandler)."""

    def enqueue(self, frame: str) -> None: ...

    def too_slow(self) -> None: ...

    async def end_operation(self, operation_id: str, message: dict[str, Any]) -> None: ...


class Member:
    """One subscriber's place in a group: the events its own history already sent, and its high mark."""

    __slots__ = ("socket", "schema", "operation_id", "query", "variables", "operation_name", "prefix", "group",
                 "sent", "high", "pending", "catch_up")

    def __init__(self, socket: Socket, schema: Any, operation_id: str, query: str,
                 variables: dict[str, Any] | None, operation_name: str | None) -> None:
        self.socket = socket
        self.schema = schema
        self.operation_id = operation_id
        self.query = query
        self.variables = variables
        self.operation_name = operation_name
        self.prefix = '{"id":' + json.dumps(operation_id) + ',"type":"next","payload":'
        self.group: Group | None = None
        self.sent: set[int] = set()  # ids its history sent (the same event may also arrive live)
        self.high = 0
        # (event id, payload) held back while its history is being sent; None once live.
        self.pending: list[tuple[int, str]] | None = []
        self.catch_up = False  # Redis came back while its history was being sent

    async def join(self, channel: str, account_id: int, pal_pk: int, pal_id: str, context: Any) -> None:
        """Join (or start) this subscription's group; returns once the group listens to the PAL's channel."""
        key = (asyncio.get_running_loop(), self.query, self.operation_name,
               json.dumps(self.variables, sort_keys=True, default=str), account_id)
        group = GROUPS.get(key)
        if group is None:
            group = GROUPS[key] = Group(key, channel, pal_pk, pal_id, self, context)
        group.members[self] = None
        self.group = group
        await group.listening()

    def remember(self, event_id: int) -> None:
        """An event the history sent."""
        self.sent.add(event_id)
        self.high = max(self.high, event_id)

    def go_live(self) -> None:
        """The history is sent: flush what the group held back, then take events as they come."""
        pending, self.pending = self.pending or [], None
        for event_id, payload in pending:
            self.offer(event_id, payload)
        if self.catch_up and self.group is not None:
            self.catch_up = False
            self.group.catch_up({self: self.high})

    def offer(self, event_id: int, payload: str, *, floor: int | None = None) -> None:
        if self.pending is not None:
            if len(self.pending) >= MAX_PENDING:
                self.socket.too_slow()
                return
            self.pending.append((event_id, payload))
            return
        if event_id in self.sent or (floor is not None and event_id <= floor):
            return
        if floor is not None:  # a catch-up from PostgreSQL: the live copy may still come
            self.sent.add(event_id)
        self.high = max(self.high, event_id)
        self.socket.enqueue(self.prefix + payload + "}")

    def leave(self) -> None:
        group, self.group = self.group, None
        if group is not None:
            group.remove(self)


class Feed:
    """The group's own subscription context marker: `pal_events` yields the events it is fed."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event: dict[str, Any] | None = None

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            event, self.event = self.event, None
            assert event is not None, "the group pulls exactly one result per event it feeds"
            yield event


class Group:
    """The members of one distinct subscription, and the one execution per event they share."""

    def __init__(self, key: tuple[Any, ...], channel: str, pal_pk: int, pal_id: str, first: Member,
                 context: Any) -> None:
        self.key = key
        self.channel = channel
        self.pal_pk, self.pal_id = pal_pk, pal_id
        self.schema = first.schema
        self.query, self.variables, self.operation_name = first.query, first.variables, first.operation_name
        self.feed = Feed()
        # The group's context: the first member's account and key, no socket of its own.
        self.context = msgspec.structs.replace(context, live=self.feed, websocket=None, request=None,
                                               response=None, connection_params=None, pending_slot=None)
        self.members: dict[Member, None] = {}
        self.executions = 0
        self._listening = asyncio.Event()
        self._failed: BaseException | None = None
        self._lock = asyncio.Lock()  # the stream runs one event at a time
        self._stream: Any = None
        self._task = asyncio.create_task(self._run(), name=f"palEvents group {pal_id}")

    async def listening(self) -> None:
        await self._listening.wait()
        if self._failed is not None:
            raise self._failed

    def remove(self, member: Member) -> None:
        self.members.pop(member, None)
        if not self.members and GROUPS.get(self.key) is self:
            del GROUPS[self.key]
            self._task.cancel()

    async def _run(self) -> None:
        plugin: ChannelsPlugin = self.context.channels
        try:
            async with plugin.start_subscription([self.channel]) as subscriber:
                self._listening.set()
                self._stream = await self.schema.subscribe(self.query, variable_values=self.variables,
                                                      context_value=self.context, operation_name=self.operation_name)
                try:
                    async for raw in subscriber.iter_events():
                        if raw == RESYNC:  # Redis came back: what pub/sub may have dropped comes from PostgreSQL
                            self.catch_up({m: m.high for m in self.members if not self._mark_catch_up(m)})
                            continue
                        event = decode_event(raw)
                        if event is None:
                            continue
                        async with self._lock:
                            payload = await self._execute(event)
                        for member in list(self.members):
                            member.offer(event["id"], payload)
                finally:
                    with suppress(Exception):
                        await self._stream.aclose()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self._failed = exc
            self._listening.set()
            log.warning("palEvents group for %s ended: %r", self.pal_id, exc)
            await self._end_all()
        finally:
            if GROUPS.get(self.key) is self:
                del GROUPS[self.key]

    @staticmethod
    def _mark_catch_up(member: Member) -> bool:
        """A member still sending its history catches up once it is live; True if so."""
        if member.pending is not None:
            member.catch_up = True
            return True
        return False

    async def _execute(self, event: dict[str, Any]) -> str:
        """Run the selection on one event, once for every member; the encoded `next` payload."""
        self.feed.event = event
        result = await self._stream.__anext__()
        self.executions += 1
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [error.formatted for error in result.errors]
        if result.extensions:
            payload["extensions"] = result.extensions
        return json.dumps(payload, separators=(",", ":"))

    def catch_up(self, floors: dict[Member, int]) -> None:
        """Send the given members the events after their high marks, from PostgreSQL."""
        if floors:
            task = asyncio.create_task(self._catch_up(floors))
            _BACKGROUND.add(task)
            task.add_done_callback(_BACKGROUND.discard)

    async def _catch_up(self, floors: dict[Member, int]) -> None:
        try:
            async for view in missed_events(self.pal_pk, self.pal_id, min(floors.values())):
                async with self._lock:
                    payload = await self._execute(view)
                for member, floor in floors.items():
                    if member.group is self:
                        member.offer(view["id"], payload, floor=floor)
        except Exception:
            log.warning("palEvents group for %s: catching up from PostgreSQL failed", self.pal_id, exc_info=True)

    async def _end_all(self) -> None:
        for member in list(self.members):
            member.group = None
            with suppress(Exception):
                await member.socket.end_operation(member.operation_id, {
                    "id": member.operation_id, "type": "error",
                    "payload": [{"message": "The live stream ended; resubscribe with after=<last event id>.",
                                 "extensions": {"code": "SERVICE_UNAVAILABLE"}}]})
        self.members.clear()


# (event loop, query, operation name, variables, account id) -> its group, in this process.
GROUPS: dict[tuple[Any, ...], Group] = {}
_BACKGROUND: set[asyncio.Task] = set()


def stats() -> dict[str, int]:
    """Groups, members and executions so far (for tests and benchmarks)."""
    return {"groups": len(GROUPS), "members": sum(len(g.members) for g in GROUPS.values()),
            "executions": sum(g.executions for g in GROUPS.values())}
