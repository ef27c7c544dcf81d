"""Multiplexed palEvents (app/graphql/multiplex.py): one execution per event per distinct subscription.

The API runs under uvicorn *in this process* (real sockets on loopback, real Redis pub/sub,
real PostgreSQL), so the test can count how often the selection was executed: every
execution of a live event goes through `PalEvent.from_view` in the `pal_events` resolver.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from collections.abc import AsyncIterator

import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from app.config import reset_settings
from app.graphql import multiplex, transport
from app.graphql.events import PalEvent
from app.services.accounts import rotate_api_key
from app.services.events import record_event
from tests.integration.test_live_status import PAL_EVENTS, LiveServer, gql_socket, make_pal
from tests.servers import free_port

SLOW_OUTBOX = 8  # frames a socket may fall behind in the slow-subscriber test ...
SLOW_BUFFER = 1024 * 1024  # ... or bytes it may leave waiting in its transport


@pytest.fixture
async def server(clean_db: None, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[LiveServer]:
    from app.asgi import create_app

    monkeypatch.setenv("AUTH_CACHE_SECONDS", "1")  # the revocation test need not wait 10 s
    reset_settings()
    port = free_port()
    config = uvicorn.Config(create_app(manage_pool=False), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    instance = uvicorn.Server(config)
    task = asyncio.create_task(instance.serve())
    for _ in range(200):
        if instance.started:
            break
        await asyncio.sleep(0.05)
    assert instance.started, "uvicorn did not start"
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/graphql", 0)
    finally:
        instance.should_exit = True
        await asyncio.wait_for(task, 10)
        monkeypatch.delenv("AUTH_CACHE_SECONDS")
        reset_settings()


@pytest.fixture
def executions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Event ids, one per execution of a PalEvent selection (live or replayed) in this process."""
    seen: list[int] = []
    original = PalEvent.from_view.__func__  # type: ignore[attr-defined]

    def counting(cls: type[PalEvent], view: dict) -> PalEvent:
        seen.append(view["id"])
        return original(cls, view)

    monkeypatch.setattr(PalEvent, "from_view", classmethod(counting))
    return seen


async def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


async def test_same_subscription_runs_once_per_event_and_sends_the_same_payload(server, api_key, executions):
    pal = await make_pal(api_key, "anna")
    async with gql_socket(server, api_key) as a, gql_socket(server, api_key) as b, \
            gql_socket(server, api_key) as c:
        for sock, op_id in ((a, "1"), (b, "1"), (c, "other-id")):
            await sock.subscribe(op_id, PAL_EVENTS, palId=pal.pal_id)
            assert (await sock.data(op_id))["palEvents"]["__typename"] == "PalSnapshot"
        assert multiplex.stats()["groups"] == 1 and multiplex.stats()["members"] == 3

        executed_before = multiplex.stats()["executions"]
        first = await record_event(pal.pk, "reply_sent", {"to": "x@y.z"}, pal_id=pal.pal_id)
        second = await record_event(pal.pk, "reply_failed", {"reason": "relay down"}, pal_id=pal.pal_id)
        got = {name: [await sock.message(op_id) for _ in range(2)]
               for name, sock, op_id in (("a", a, "1"), ("b", b, "1"), ("c", c, "other-id"))}

        # One execution per event, however many subscribers (it was one per subscriber).
        assert executions == [first["id"], second["id"]]
        assert multiplex.stats()["executions"] - executed_before == 2
        # Every subscriber gets the same payload; only the operation id differs.
        for name in ("a", "b", "c"):
            assert [m["payload"]["data"]["palEvents"]["kind"] for m in got[name]] == ["REPLY_SENT", "REPLY_FAILED"]
        assert [m["payload"] for m in got["a"]] == [m["payload"] for m in got["b"]] == [m["payload"] for m in got["c"]]
        assert [m["id"] for m in got["c"]] == ["other-id", "other-id"]
        assert await a.silent("1", 0.3)

    await wait_for(lambda: multiplex.stats()["groups"] == 0)  # the last subscriber gone, the group too


async def test_history_then_live_without_gaps_or_duplicates(server, api_key, executions):
    """A subscriber with `after` gets its missed events from PostgreSQL, then joins the shared stream."""
    pal = await make_pal(api_key, "anna")
    old = [await record_event(pal.pk, "reply_sent", {"n": n}, pal_id=pal.pal_id) for n in range(3)]
    async with gql_socket(server, api_key) as live, gql_socket(server, api_key) as late:
        await live.subscribe("1", PAL_EVENTS, palId=pal.pal_id)
        await live.data("1")
        await late.subscribe("1", PAL_EVENTS, palId=pal.pal_id, after=old[0]["id"])
        assert (await late.data("1"))["palEvents"]["__typename"] == "PalSnapshot"
        replayed = [(await late.data("1"))["palEvents"]["payload"]["n"] for _ in range(2)]
        assert replayed == [1, 2]
        new = await record_event(pal.pk, "reply_sent", {"n": 3}, pal_id=pal.pal_id)
        for sock in (live, late):
            assert (await sock.data("1"))["palEvents"]["id"] == str(new["id"])  # an ID travels as a string
            assert await sock.silent("1", 0.3)
        # Different variables are different subscriptions: two groups, one execution each.
        assert multiplex.stats()["groups"] == 2
        assert executions.count(new["id"]) == 2


async def test_accounts_and_variables_never_share_a_result(server, api_key, other_api_key, executions):
    mine = await make_pal(api_key, "anna")
    theirs = await make_pal(other_api_key, "bert")
    async with gql_socket(server, api_key) as owner, gql_socket(server, other_api_key) as stranger:
        await owner.subscribe("1", PAL_EVENTS, palId=mine.pal_id)
        await owner.data("1")
        # The same document and variables from another account: refused, and never joins the group.
        await stranger.subscribe("1", PAL_EVENTS, palId=mine.pal_id)
        refused = await stranger.message("1")
        assert refused["type"] == "next" and refused["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        assert (await stranger.message("1"))["type"] == "complete"
        await stranger.subscribe("2", PAL_EVENTS, palId=theirs.pal_id)
        await stranger.data("2")
        assert multiplex.stats() | {"executions": 0} == {"groups": 2, "members": 2, "executions": 0}

        await record_event(mine.pk, "reply_sent", {"secret": "mine"}, pal_id=mine.pal_id)
        await record_event(theirs.pk, "reply_sent", {"secret": "theirs"}, pal_id=theirs.pal_id)
        assert (await owner.data("1"))["palEvents"]["payload"] == {"secret": "mine"}
        assert (await stranger.data("2"))["palEvents"]["payload"] == {"secret": "theirs"}
        assert await owner.silent("1", 0.3) and await stranger.silent("1", 0.1) and await stranger.silent("2", 0.1)


async def test_revoked_key_closes_every_socket_of_its_group(server, api_key):
    pal = await make_pal(api_key, "anna")
    async with gql_socket(server, api_key) as a, gql_socket(server, api_key) as b:
        for sock in (a, b):
            await sock.subscribe("1", PAL_EVENTS, palId=pal.pal_id)
            await sock.data("1")
        await rotate_api_key(pal.account_id)
        codes = []
        for sock in (a, b):
            with pytest.raises(ConnectionClosed) as closed:
                async with asyncio.timeout(5):
                    while True:
                        await sock.ws.recv()
            codes.append(closed.value.rcvd.code if closed.value.rcvd else None)
        assert codes == [4403, 4403]
    await wait_for(lambda: multiplex.stats()["groups"] == 0)


class RawSocket:
    """A websocket client on a bare TCP socket that reads only when told to (a stuck browser tab)."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//", 1)[1].split("/", 1)[0].split(":")
        self.sock = socket.create_connection((host, int(port)))
        # A small receive buffer (no autotuning up to tens of MB): the backlog builds up in the server.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        self.buffer = b""

    async def handshake(self, key: str) -> None:
        request = ("GET /graphql HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
                   "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: graphql-transport-ws\r\n\r\n")
        await asyncio.to_thread(self.sock.sendall, request.encode())
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += await asyncio.to_thread(self.sock.recv, 65536)
        assert self.buffer.startswith(b"HTTP/1.1 101"), self.buffer[:200]
        self.buffer = self.buffer.split(b"\r\n\r\n", 1)[1]
        await self.send({"type": "connection_init", "payload": {"apiKey": key}})

    async def send(self, message: dict) -> None:
        data = json.dumps(message).encode()
        mask = os.urandom(4)
        header = bytes([0x81]) + (bytes([0x80 | len(data)]) if len(data) < 126
                                  else bytes([0x80 | 126]) + struct.pack("!H", len(data)))
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        await asyncio.to_thread(self.sock.sendall, header + mask + masked)

    async def close_code(self, timeout: float) -> int | None:
        """Read everything until the server's close frame; its code (None if the server never closed)."""
        self.sock.settimeout(timeout)
        data = self.buffer
        try:
            while True:
                chunk = await asyncio.to_thread(self.sock.recv, 1 << 20)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        # Walk the frames; the close frame (opcode 8) carries the code.
        offset = 0
        while offset + 2 <= len(data):
            opcode, length = data[offset] & 0x0F, data[offset + 1] & 0x7F
            offset += 2
            if length == 126:
                length, offset = struct.unpack("!H", data[offset:offset + 2])[0], offset + 2
            elif length == 127:
                length, offset = struct.unpack("!Q", data[offset:offset + 8])[0], offset + 8
            if opcode == 8:
                return struct.unpack("!H", data[offset:offset + 2])[0]
            offset += length
        return None


async def test_a_slow_subscriber_never_delays_the_others(server, api_key, monkeypatch):
    """A socket that does not read is closed 1013 once too far behind; the others get every event."""
    monkeypatch.setattr(transport, "MAX_OUTBOX", SLOW_OUTBOX)
    monkeypatch.setattr(transport, "MAX_BUFFERED_BYTES", SLOW_BUFFER)
    pal = await make_pal(api_key, "anna")
    big = "x" * 60_000  # 200 of these are far more than the kernel's socket buffers hold
    count = 200
    slow = RawSocket(server.ws_url)
    try:
        await slow.handshake(api_key)
        await slow.send({"id": "1", "type": "subscribe",
                         "payload": {"query": PAL_EVENTS, "variables": {"palId": pal.pal_id}}})
        async with gql_socket(server, api_key) as fast:
            await fast.subscribe("1", PAL_EVENTS, palId=pal.pal_id)
            await fast.data("1")
            await wait_for(lambda: multiplex.stats()["members"] == 2)

            async def publish() -> None:
                for n in range(count):
                    await record_event(pal.pk, "reply_sent", {"n": n, "pad": big}, pal_id=pal.pal_id)

            publisher = asyncio.create_task(publish())
            got = []
            async with asyncio.timeout(30):
                while len(got) < count:
                    got.append((await fast.data("1", timeout=10))["palEvents"]["payload"]["n"])
            await publisher
            assert got == list(range(count))
            # The slow one was closed with 1013 (try again later), not left to buffer without bound.
            assert await slow.close_code(timeout=5) == 1013
    finally:
        slow.sock.close()


async def test_an_acknowledged_socket_keeps_no_handshake_headers_and_still_works(server, api_key, executions):
    """Per idle socket memory (docs/benchmarks.md): the handshake's headers are let go after the ack."""
    pal = await make_pal(api_key, "anna")
    async with gql_socket(server, api_key) as sock:
        await sock.subscribe("1", PAL_EVENTS, palId=pal.pal_id)
        assert (await sock.data("1"))["palEvents"]["__typename"] == "PalSnapshot"
        [handler] = list(transport._SOCKETS)
        protocol = transport._direct_writer(handler.websocket.ws.send).protocol
        assert handler.websocket.ws.scope["headers"] == [] and protocol.scope["headers"] == []
        assert protocol.request is None and protocol.response is None
        assert protocol.queue._putters == () and protocol.queue._finished is transport._NEVER_JOINED
        # The slimmed receive queue still carries messages: a second subscription, then live events.
        await sock.subscribe("2", PAL_EVENTS, palId=pal.pal_id)
        assert (await sock.data("2"))["palEvents"]["__typename"] == "PalSnapshot"
        await record_event(pal.pk, "reply_sent", {"to": "x@y.z"}, pal_id=pal.pal_id)
        for op_id in ("1", "2"):
            assert (await sock.message(op_id))["payload"]["data"]["palEvents"]["kind"] == "REPLY_SENT"
