"""Agent links: a bot run connects out to its PAL's `layers.realtime.websocket_url`.

While the bot runs, the agent at that URL is a client of the conversation exactly as one of
``GET /v2/conversations/{id}/stream`` (app/rest/stream.py): it gets ``started``, then the
meeting's audio (binary) and its transcript / chat / status events (text), and sends the PAL's
voice (binary) and ``say`` / ``chat`` / ``clear`` (text), validated the same way.

- The connection carries ``x-pal-timestamp``, ``x-pal-conversation``, ``x-pal-id`` and
  ``x-pal-signature: v1=<hex HMAC-SHA256("<timestamp>.<conversation_id>")>`` keyed with the
  account's API-key hash (app/domain/agent_links.py; README shows the agent's check).
- The host is resolved at each attempt and every address it resolves to must be public unless
  AGENT_ALLOWED_HOSTS covers it; the socket goes to an address that was checked (no second
  lookup), and redirects are never followed.
- A dropped or failed connection is retried with exponential backoff (0.5 s doubling to 30 s,
  with jitter) until the run ends; the meeting never waits for the agent. An agent that reads
  too slowly fills its bounded queue and is disconnected (1008), then reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from redis.exceptions import RedisError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from app.config import get_settings
from app.domain.agent_links import address_refusal, parse_agent_url, signed_headers
from app.domain.backoff import jittered
from app.services.resolve import Resolver, addresses_of, resolve
from app.domain.join_state import TERMINAL
from app.domain.pal_document import agent_url
from app.rest.stream import error_message, parse_client_text, started_message
from app.services import media_relay
from app.services.rows import json_value
from app.tables import Pal

log = logging.getLogger(__name__)

BACKOFF_START_SECONDS = 0.5
BACKOFF_MAX_SECONDS = 30.0
STABLE_SECONDS = 10.0  # a connection that lasted this long resets the backoff
TCP_CONNECT_SECONDS = 5.0  # per resolved address
OPEN_TIMEOUT_SECONDS = 10.0  # TCP + TLS + websocket handshake
SEND_QUEUE = 256  # frames waiting for the agent (~12 s of 50 ms audio)
SEND_TIMEOUT_SECONDS = 10.0  # one frame the agent does not take this long: too slow
CLOSE_TIMEOUT_SECONDS = 2.0
MAX_INCOMING_BYTES = 64 * 1024  # one agent frame (the stream's own limits are lower and checked after)
CLOSE_NORMAL, CLOSE_TOO_SLOW, CLOSE_UNAVAILABLE = 1000, 1008, 1013
USER_AGENT = "pal-meetings-agent-link/1"

class Refused(Exception):
    """The URL's host may not be reached (loopback, private, ... and not in AGENT_ALLOWED_HOSTS)."""


class NotSet(Exception):
    """The PAL has no layers.realtime.websocket_url (any more)."""


@dataclass(frozen=True)
class Target:
    url: str
    pal_id: str
    key_hash: str


@dataclass
class LinkStats:
    attempts: int = 0
    connects: int = 0
    refused: int = 0
    failures: int = 0
    too_slow: int = 0
    sent: int = 0
    received: int = 0
    bad_frames: int = 0


def loggable(url: str) -> str:
    """scheme://host:port/path: a query may hold the agent's own token, which is not logged."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


async def load_target(pal_pk: int) -> Target | None:
    """The PAL's agent URL and the account's key hash, read at each attempt: an edited URL or a
    rotated key takes effect at the next connection."""
    row = await Pal.select(Pal.pal_id, Pal.layers, Pal.account.api_key_hash.as_alias("key_hash")).where(
        Pal.id == pal_pk).first()
    if row is None:
        return None
    url = agent_url(json_value(row["layers"], {}))
    if url is None or not row["key_hash"]:
        return None
    return Target(url=url, pal_id=row["pal_id"], key_hash=row["key_hash"])


@dataclass
class AgentLink:
    """One bot run's connection to its PAL's agent. ``start()`` when the run starts, ``await
    close()`` when it ends (after the relay flushed: the agent gets the final status first)."""

    pal_pk: int
    conversation_id: str
    allowed_hosts: tuple[str, ...] | None = None  # None: AGENT_ALLOWED_HOSTS
    resolver: Resolver = resolve
    target_loader: Callable[[int], Awaitable[Target | None]] = load_target
    clock: Callable[[], float] = time.time
    stats: LinkStats = field(default_factory=LinkStats)

    def __post_init__(self) -> None:
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._connected = asyncio.Event()
        self._final = asyncio.Event()  # a terminal status was delivered to the agent
        self._last_refusal: str | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run())

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def close(self, *, grace: float = 1.0) -> None:
        """Stop: when connected, give the agent up to `grace` s to receive the run's final status."""
        self._closing = True
        task, self._task = self._task, None
        if task is None:
            return
        if self._connected.is_set() and not task.done():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._final.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def run(self) -> None:
        """Until cancelled (or the PAL has no agent URL): connect, serve, and reconnect."""
        delay = BACKOFF_START_SECONDS
        while not self._closing:
            began = time.monotonic()
            url = ""
            try:
                target = await self.target_loader(self.pal_pk)
                if target is None:
                    raise NotSet
                url = target.url
                reason = await self._session(target)
                outcome = f"disconnected from {loggable(url)}: {reason}"
            except NotSet:
                if self.stats.attempts:  # removed during the run; quiet for PALs that never had one
                    log.info("agent link %s: the PAL has no layers.realtime.websocket_url any more; stopping",
                             self.conversation_id)
                return
            except Refused as exc:
                self.stats.refused += 1
                if str(exc) != self._last_refusal:  # one line per reason, not per retry
                    log.warning("agent link %s: refused %s: %s", self.conversation_id, loggable(url), exc)
                    self._last_refusal = str(exc)
                outcome = None
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI, ValueError, RedisError) as exc:
                self.stats.failures += 1
                outcome = f"cannot connect to {loggable(url)}: {exc!r}"
            except Exception as exc:  # noqa: BLE001 - PostgreSQL down, a bug: the meeting goes on
                self.stats.failures += 1
                log.exception("agent link %s: unexpected error", self.conversation_id)
                outcome = f"failed: {exc!r}"
            if self._closing:
                return
            if time.monotonic() - began >= STABLE_SECONDS:
                delay = BACKOFF_START_SECONDS
            wait = jittered(delay)
            if outcome is not None:
                log.info("agent link %s: %s; retrying in %.1f s", self.conversation_id, outcome, wait)
            await asyncio.sleep(wait)
            delay = min(delay * 2, BACKOFF_MAX_SECONDS)

    # --- one connection -----------------------------------------------------------------------

    async def _socket(self, host: str, port: int) -> socket.socket:
        """A TCP socket connected to one of `host`'s addresses, each checked before use."""
        self.stats.attempts += 1
        infos = await self.resolver(host, port)
        addresses = addresses_of(infos)
        allowed = self.allowed_hosts if self.allowed_hosts is not None else get_settings().agent_allowed_hosts
        why = address_refusal(host, addresses, allowed)
        if why is not None:
            raise Refused(why)
        self._last_refusal = None
        loop = asyncio.get_running_loop()
        error: Exception = OSError(f"no address for {host}")
        for family, kind, proto, _, sockaddr in infos:
            sock = socket.socket(family, kind, proto)
            sock.setblocking(False)
            try:
                async with asyncio.timeout(TCP_CONNECT_SECONDS):
                    await loop.sock_connect(sock, sockaddr)
                return sock
            except (OSError, TimeoutError) as exc:
                sock.close()
                error = exc
            except BaseException:
                sock.close()
                raise
        raise error

    async def _session(self, target: Target) -> str:
        parsed = parse_agent_url(target.url)
        async with asyncio.timeout(OPEN_TIMEOUT_SECONDS):
            sock = await self._socket(parsed.host, parsed.port)
        headers = signed_headers(target.key_hash, int(self.clock()), self.conversation_id, target.pal_id)
        try:
            # `sock` given: no proxy, no second DNS lookup, and redirects are refused.
            ws = await connect(target.url, sock=sock, additional_headers=headers, user_agent_header=USER_AGENT,
                               open_timeout=OPEN_TIMEOUT_SECONDS, max_size=MAX_INCOMING_BYTES,
                               close_timeout=CLOSE_TIMEOUT_SECONDS, compression=None)
        except BaseException:
            sock.close()
            raise
        self.stats.connects += 1
        log.info("agent link %s: connected to %s", self.conversation_id, loggable(target.url))
        code, reason = CLOSE_NORMAL, "The meeting ended."
        try:
            self._connected.set()
            code, reason = await self._serve(ws)
            return reason
        finally:
            self._connected.clear()
            if code == CLOSE_TOO_SLOW:
                self.stats.too_slow += 1
            with contextlib.suppress(Exception):
                await asyncio.shield(asyncio.wait_for(ws.close(code, reason[:120]), CLOSE_TIMEOUT_SECONDS))

    async def _serve(self, ws: ClientConnection) -> tuple[int, str]:
        queue: asyncio.Queue[str | bytes] = asyncio.Queue(maxsize=SEND_QUEUE)

        def offer(item: str | bytes) -> bool:
            try:
                queue.put_nowait(item)
                return True
            except asyncio.QueueFull:
                return False

        too_slow = (CLOSE_TOO_SLOW, "Too slow: the agent did not keep up with the stream.")

        async def relay(feed: Any) -> tuple[int, str]:
            try:
                async for message in feed:
                    item = message.data if message.kind == "audio" else message.data.decode("utf-8", "replace")
                    if not offer(item):
                        return too_slow
            except (RedisError, OSError) as exc:
                return CLOSE_UNAVAILABLE, f"The live stream was interrupted ({exc!r})."
            return CLOSE_UNAVAILABLE, "The live stream ended."

        async def sender() -> tuple[int, str]:
            while True:
                item = await queue.get()
                try:
                    async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                        await ws.send(item)
                except TimeoutError:
                    return too_slow
                except ConnectionClosed as closed:
                    return CLOSE_NORMAL, _closed(closed)
                self.stats.sent += 1
                if isinstance(item, str) and '"type":"status"' in item and _terminal(item):
                    self._final.set()

        async def receiver() -> tuple[int, str]:
            try:
                async for frame in ws:
                    self.stats.received += 1
                    problem = await (self._voice(frame) if isinstance(frame, bytes) else self._text(frame))
                    if problem:
                        self.stats.bad_frames += 1
                        if not offer(error_message(problem)):
                            return too_slow
            except ConnectionClosed as closed:
                return CLOSE_NORMAL, _closed(closed)
            return CLOSE_NORMAL, _closed(None, ws)

        try:
            async with media_relay.listen(self.conversation_id) as feed:
                offer(started_message(self.conversation_id))
                tasks = [asyncio.create_task(relay(feed)), asyncio.create_task(sender()),
                         asyncio.create_task(receiver())]
                try:
                    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
                    return next(iter(done)).result()
                finally:
                    for task in tasks:
                        task.cancel()
                    for task in tasks:
                        with contextlib.suppress(asyncio.CancelledError, Exception):
                            await task
        except (RedisError, OSError) as exc:
            return CLOSE_UNAVAILABLE, f"Live media is unavailable ({exc!r})."

    async def _voice(self, pcm: bytes) -> str | None:
        return media_relay.pcm_problem(pcm) or await media_relay.deliver_voice(self.conversation_id, pcm)

    async def _text(self, text: str) -> str | None:
        parsed = parse_client_text(text)
        if isinstance(parsed, str):
            return parsed
        return await media_relay.deliver_command(self.conversation_id, parsed)


def _closed(closed: ConnectionClosed | None, ws: ClientConnection | None = None) -> str:
    received = closed.rcvd if closed is not None else (ws.close_rcvd if ws is not None else None)
    if received is None:
        return "the agent went away"
    return f"the agent closed the connection ({received.code}{' ' + received.reason if received.reason else ''})"


def _terminal(text: str) -> bool:
    try:
        return json.loads(text).get("status") in TERMINAL
    except (ValueError, AttributeError):
        return False


def for_run(pal_pk: int, conversation_id: str) -> AgentLink:
    """The link a worker starts next to a run's relay; it does nothing when the PAL has no URL."""
    return AgentLink(pal_pk, conversation_id)
