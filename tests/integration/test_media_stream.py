"""The media bridge outside the bot: stream websocket, transcript, say / chat, one conversation per run.

A real API process (uvicorn on loopback) and real PostgreSQL and Redis. The worker side is
faked with app/services/media_relay.py and workers/joins.py's glue, exactly as run_join
wires them around a bot: what a bot would call (on_audio, on_caption, ...) is called here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.keys import conversation_commands_channel, conversation_voice_channel
from app.redis_client import redis
from app.services import bot_runs, media_relay
from app.services.accounts import authenticate, rotate_api_key
from app.services.conversations import create_conversation
from app.services.joins import set_status
from app.tables import Conversation, Join
from tests.fixtures import graphql
from tests.integration.test_live_status import LiveServer, gql_socket, make_join, make_pal, start_api
from workers.joins import command_sink, media_channels
from workers.meet_bot.channels import Caption, ChatMessage, Clear, MediaChannels, Say, SendChat, SpeakAudio

URL = "https://meet.google.com/abc-defg-hij"
AT = datetime(2026, 12, 1, 10, 0, 0, tzinfo=timezone.utc)
AUTH_CACHE = 1.0  # AUTH_CACHE_SECONDS of the API process


@pytest.fixture(scope="module")
async def server(database: None) -> AsyncIterator[LiveServer]:
    # A short key cache, so that a rotated key closes an open stream within about a second.
    async with start_api(AUTH_CACHE_SECONDS=str(AUTH_CACHE)) as live:
        yield live


@pytest.fixture
async def conversation(api_key, redis_queue) -> dict[str, Any]:
    """An API conversation of a PAL named Anna; its join is scheduled (not in the call)."""
    pal = await make_pal(api_key, "anna")
    account = await authenticate(api_key)
    view = await create_conversation(account.id, {"pal_id": pal.pal_id, "meeting_url": URL},
                                     now=datetime.now(timezone.utc))
    row = await Conversation.select(Conversation.id).where(
        Conversation.conversation_id == view["conversation_id"]).first()
    return {**view, "pk": row["id"], "pal": pal}


async def in_call(conversation: dict[str, Any]) -> None:
    for status in ("dispatching", "joining", "in_call"):
        await set_status(conversation["join_id"], status, now=datetime.now(timezone.utc))


def stream_url(server: LiveServer, conversation_id: str) -> str:
    return server.ws_url.replace("/graphql", f"/v2/conversations/{conversation_id}/stream")


@asynccontextmanager
async def stream(server: LiveServer, key: str | None, conversation_id: str, **kwargs: Any
                 ) -> AsyncIterator[ClientConnection]:
    headers = {"x-api-key": key} if key else {}
    async with connect(stream_url(server, conversation_id), additional_headers=headers, **kwargs) as ws:
        yield ws


async def started(ws: ClientConnection) -> dict[str, Any]:
    first = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert first["type"] == "started", first
    return first


async def recv(ws: ClientConnection) -> Any:
    message = await asyncio.wait_for(ws.recv(), 10)
    return message if isinstance(message, bytes) else json.loads(message)


async def close_code(ws: ClientConnection, timeout: float = 15) -> int | None:
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def subscribed(channel: str, count: int = 1) -> None:
    for _ in range(200):
        if dict(await redis().pubsub_numsub(channel)).get(channel.encode(), 0) >= count:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"nobody subscribed to {channel}")


def relay_for(conversation: dict[str, Any]) -> media_relay.WorkerRelay:
    relay = media_relay.WorkerRelay(conversation["conversation_id"], conversation["pk"], "Anna")
    relay.start()
    return relay


@asynccontextmanager
async def fake_bot(conversation: dict[str, Any]) -> AsyncIterator[tuple[media_relay.WorkerRelay, MediaChannels]]:
    """What run_join sets up around a bot: the relay, the bot's channels and the command pump."""
    relay = relay_for(conversation)
    channels = media_channels(relay)
    pump = asyncio.create_task(relay.pump_commands(command_sink(channels, conversation["conversation_id"])))
    await subscribed(conversation_commands_channel(conversation["conversation_id"]))
    await subscribed(conversation_voice_channel(conversation["conversation_id"]))
    try:
        yield relay, channels
    finally:
        pump.cancel()
        await relay.close()


async def next_command(channels: MediaChannels) -> Any:
    return await asyncio.wait_for(channels.commands.get(), 10)


def pcm(frames: int = 800, value: int = 1000) -> bytes:
    return value.to_bytes(2, "little", signed=True) * frames


# --- the stream ---------------------------------------------------------------------------------

async def test_stream_carries_the_meeting_out_and_the_voice_and_commands_in(server, api_key, conversation):
    cid = conversation["conversation_id"]
    await in_call(conversation)
    async with stream(server, api_key, cid) as ws, fake_bot(conversation) as (relay, channels):
        assert await started(ws) == {"type": "started", "conversation_id": cid, "sample_rate": 16000,
                                     "encoding": "pcm_s16le", "channels": 1}
        # The meeting, as the bot reports it.
        channels.on_audio(pcm())
        channels.on_caption(Caption("Alex", "Hello the", False, AT, "l1"))
        channels.on_caption(Caption("Alex", "Hello there", True, AT, "l1"))
        channels.on_chat(ChatMessage("Alex", "a link: https://x.y", AT + timedelta(seconds=1)))
        channels.on_self_speech("Hi Alex", AT + timedelta(seconds=2))
        relay.on_status("in_call", None)
        assert await recv(ws) == pcm()
        assert await recv(ws) == {"type": "transcript", "speaker": "Alex", "text": "Hello the", "final": False,
                                  "at": "2026-12-01T10:00:00Z", "line_id": "l1"}
        assert (await recv(ws))["final"] is True
        assert await recv(ws) == {"type": "chat", "sender": "Alex", "text": "a link: https://x.y",
                                  "at": "2026-12-01T10:00:01Z", "self": False}
        spoken = await recv(ws)
        assert (spoken["speaker"], spoken["text"], spoken["self"]) == ("Anna", "Hi Alex", True)
        assert await recv(ws) == {"type": "status", "status": "in_call", "reason": None}

        # The PAL's voice and commands, from the client to the bot's queue.
        await ws.send(pcm(1600))
        await ws.send(json.dumps({"type": "say", "text": " Nice to meet you "}))
        await ws.send(json.dumps({"type": "chat", "text": "Notes follow"}))
        await ws.send(json.dumps({"type": "clear"}))
        assert await next_command(channels) == SpeakAudio(pcm(1600), live=True)
        assert await next_command(channels) == Say("Nice to meet you")
        assert await next_command(channels) == SendChat("Notes follow")
        assert await next_command(channels) == Clear()

        # Malformed frames: an error each, and the socket stays open.
        for bad, fragment in [(b"\x01\x02\x03", "even number"), (pcm(1601), "at most 3200"),
                              ("not json", "must be JSON"), (json.dumps({"type": "dance"}), "say, chat or clear"),
                              (json.dumps({"type": "say", "text": ""}), "text is required"),
                              (json.dumps({"type": "say", "text": "x" * 2001}), "too long"),
                              ("x" * 9000, "at most 8192")]:
            await ws.send(bad)
            error = await recv(ws)
            assert error["type"] == "error" and fragment in error["message"], (bad[:20], error)
        await ws.send(json.dumps({"type": "say", "text": "still here"}))
        assert await next_command(channels) == Say("still here")
    assert relay.stats.dropped == relay.stats.publish_errors == relay.stats.store_errors == 0

    # The final caption, the chat and the PAL's own words were stored, in order; partials were not.
    async with httpx.AsyncClient(base_url=server.base_url, headers={"x-api-key": api_key}) as http:
        body = (await http.get(f"/v2/conversations/{cid}/transcript")).json()
    assert body["conversation_id"] == cid and body["has_more"] is False
    assert [{k: e[k] for k in ("kind", "speaker", "text", "at", "self")} for e in body["entries"]] == [
        {"kind": "speech", "speaker": "Alex", "text": "Hello there", "at": "2026-12-01T10:00:00Z", "self": False},
        {"kind": "chat", "speaker": "Alex", "text": "a link: https://x.y", "at": "2026-12-01T10:00:01Z",
         "self": False},
        {"kind": "speech", "speaker": "Anna", "text": "Hi Alex", "at": "2026-12-01T10:00:02Z", "self": True},
    ]


async def test_stream_refuses_other_accounts_wrong_keys_and_unknown_conversations(
        server, api_key, other_api_key, conversation):
    cid = conversation["conversation_id"]
    for key in (other_api_key, "not-a-key", None):
        async with stream(server, key, cid) as ws:
            assert await close_code(ws) == 4403
    async with stream(server, api_key, "cnope0000000") as ws:
        assert await close_code(ws) == 4404
    async with stream(server, api_key, cid) as ws:  # the right key still works
        await started(ws)


async def test_a_rotated_key_closes_an_open_stream_4403(server, api_key, conversation):
    cid = conversation["conversation_id"]
    account = await authenticate(api_key)
    async with stream(server, api_key, cid) as idle, stream(server, api_key, cid) as talking:
        await started(idle)
        await started(talking)
        await media_relay.publish_audio(cid, pcm(10))  # both are served until the key changes
        assert await recv(idle) == pcm(10) and await recv(talking) == pcm(10)
        new_key = await rotate_api_key(account.id)
        rotated = asyncio.get_running_loop().time()

        async def keep_talking() -> None:  # a client frame re-checks the key too
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await talking.send(json.dumps({"type": "clear"}))
                    await asyncio.sleep(0.2)

        talker = asyncio.create_task(keep_talking())
        # The idle client sends nothing: the periodic re-check closes it.
        assert await close_code(idle, timeout=10) == 4403
        idle_after = asyncio.get_running_loop().time() - rotated
        assert await close_code(talking, timeout=10) == 4403
        talker.cancel()
    # Within the API process' cache lifetime (plus the re-check's jitter and some slack).
    assert idle_after <= AUTH_CACHE + 1.5, idle_after
    async with stream(server, api_key, cid) as ws:  # the old key no longer opens a stream
        assert await close_code(ws) == 4403
    async with stream(server, new_key, cid) as ws:  # the new one does
        await started(ws)


async def test_say_chat_and_voice_on_the_stream_need_the_bot_in_the_call(server, api_key, conversation):
    cid = conversation["conversation_id"]
    async with stream(server, api_key, cid) as ws, fake_bot(conversation) as (relay, channels):
        await started(ws)
        # Scheduled, not in the call: as REST answers 409, each gets an error and nothing is sent.
        for frame in (json.dumps({"type": "say", "text": "hi"}), json.dumps({"type": "chat", "text": "hi"}), pcm()):
            await ws.send(frame)
            error = await recv(ws)
            assert error["type"] == "error" and "not in the call (status scheduled)" in error["message"], error
        for _ in range(5):  # a burst of voice frames: at most one error a second
            await ws.send(pcm())
        await ws.send(json.dumps({"type": "clear"}))  # clear is always harmless
        assert await next_command(channels) == Clear()
        assert channels.commands.empty()
        # The bot reports in_call (published by the worker): accepted at once.
        await in_call(conversation)
        relay.on_status("in_call", None)
        assert await recv(ws) == {"type": "status", "status": "in_call", "reason": None}
        await ws.send(json.dumps({"type": "say", "text": "hi"}))
        await ws.send(pcm())
        assert await next_command(channels) == Say("hi")
        assert await next_command(channels) == SpeakAudio(pcm(), live=True)
        # The bot left: refused again (the status event, and the join's row, say so).
        await set_status(conversation["join_id"], "left", now=datetime.now(timezone.utc))
        relay.on_status("left", "stopped")
        assert (await recv(ws))["status"] == "left"
        await ws.send(json.dumps({"type": "chat", "text": "bye"}))
        error = await recv(ws)
        assert error["type"] == "error" and "not in the call (status left)" in error["message"], error
        assert channels.commands.empty()


class RawStream:
    """A stream client on a bare socket that reads only when told to: a really slow reader.

    (A websockets client keeps reading into its own buffers; this one leaves the bytes in
    the kernel, so the server's side of the connection backs up.)"""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, server: LiveServer, key: str, conversation_id: str) -> "RawStream":
        port = int(server.base_url.rsplit(":", 1)[1])
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        raw.connect(("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=raw)
        writer.write((f"GET /v2/conversations/{conversation_id}/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                      "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      f"Sec-WebSocket-Version: 13\r\nx-api-key: {key}\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def frame(self) -> tuple[int, bytes]:
        b0, b1 = await self.reader.readexactly(2)
        length = b1 & 0x7F
        if length == 126:
            length = int.from_bytes(await self.reader.readexactly(2), "big")
        elif length == 127:
            length = int.from_bytes(await self.reader.readexactly(8), "big")
        return b0 & 0x0F, await self.reader.readexactly(length)

    async def close_code(self, timeout: float = 30) -> tuple[int | None, int]:
        """Read everything up to the close frame: its code, and how many binary frames came first."""
        frames = 0
        async with asyncio.timeout(timeout):
            while True:
                opcode, payload = await self.frame()
                if opcode == 8:
                    return int.from_bytes(payload[:2], "big"), frames
                frames += opcode == 2


async def test_a_slow_reader_is_dropped_and_the_others_keep_receiving(server, api_key, conversation):
    cid = conversation["conversation_id"]
    slow = await RawStream.open(server, api_key, cid)
    frames = 3000  # 9.6 MB: more than the kernel's buffers, the server's and the client's send queue hold
    try:
        async with stream(server, api_key, cid) as fast:
            opcode, payload = await slow.frame()
            assert opcode == 1 and json.loads(payload)["type"] == "started"
            await started(fast)
            received = 0

            async def read_all() -> None:
                nonlocal received
                while received < frames:
                    assert await recv(fast) == pcm(1600, received % 1000)
                    received += 1

            reader = asyncio.create_task(read_all())
            for i in range(frames):  # ~1500 frames/s, 75 times real time
                await media_relay.publish_audio(cid, pcm(1600, i % 1000))
                if i % 15 == 14:
                    await asyncio.sleep(0.01)
            await asyncio.wait_for(reader, 30)
            assert received == frames
            code, before = await slow.close_code()
            assert code == 1008 and before < frames
            # The fast one is still connected and served.
            await media_relay.publish_audio(cid, pcm(10))
            assert await recv(fast) == pcm(10)
    finally:
        slow.writer.close()


# --- REST and GraphQL -----------------------------------------------------------------------------

async def test_say_and_chat_need_the_bot_in_the_call_and_bounded_text(client, api_key, other_api_key, conversation):
    cid = conversation["conversation_id"]
    headers = {"x-api-key": api_key}
    not_yet = await client.post(f"/v2/conversations/{cid}/say", json={"text": "hi"}, headers=headers)
    assert not_yet.status_code == 409 and "not in the call" in not_yet.json()["error"]
    await in_call(conversation)
    async with media_relay.subscription({conversation_commands_channel(cid): "command"}) as commands:
        said = await client.post(f"/v2/conversations/{cid}/say", json={"text": " hello "}, headers=headers)
        assert said.status_code == 202 and said.json() == {"conversation_id": cid, "type": "say", "text": "hello"}
        chat = await client.post(f"/v2/conversations/{cid}/chat", json={"text": "x" * 2000}, headers=headers)
        assert chat.status_code == 202
        received = [json.loads((await asyncio.wait_for(anext(commands), 10)).data) for _ in range(2)]
    assert received == [{"type": "say", "text": "hello"}, {"type": "chat", "text": "x" * 2000}]
    for body in ({"text": ""}, {"text": "   "}, {"text": "x" * 2001}, {}, {"text": 5}, ["text"]):
        response = await client.post(f"/v2/conversations/{cid}/chat", json=body, headers=headers)
        assert response.status_code == 400, (body, response.text)
    assert (await client.post(f"/v2/conversations/{cid}/say", json={"text": "hi"},
                              headers={"x-api-key": other_api_key})).status_code == 404
    assert (await client.post(f"/v2/conversations/{cid}/say", json={"text": "hi"})).status_code == 401

    gql_say = await graphql(client, api_key, 'mutation($c: ID!) { say(conversationId: $c, text: "hey") '
                                             '{ conversationId type text } }', c=cid)
    assert gql_say["data"]["say"] == {"conversationId": cid, "type": "say", "text": "hey"}
    too_long = await graphql(client, api_key, "mutation($c: ID!, $t: String!) { sendChat(conversationId: $c, "
                                              "text: $t) { text } }", c=cid, t="x" * 2001)
    assert too_long["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    await set_status(conversation["join_id"], "left", now=datetime.now(timezone.utc))
    gone = await graphql(client, api_key, 'mutation($c: ID!) { sendChat(conversationId: $c, text: "x") '
                                          '{ text } }', c=cid)
    assert gone["errors"][0]["extensions"]["code"] == "CONFLICT"


async def test_transcript_pages_over_rest_and_graphql(client, api_key, other_api_key, conversation):
    cid = conversation["conversation_id"]
    relay = relay_for(conversation)
    for i in range(3):
        relay.on_caption(Caption("Alex", f"line {i}", True, AT + timedelta(seconds=i), f"l{i}"))
    relay.on_chat(ChatMessage("Anna", "sent by the PAL", AT + timedelta(seconds=5), self=True))
    await relay.close()
    headers = {"x-api-key": api_key}
    page = (await client.get(f"/v2/conversations/{cid}/transcript?first=2", headers=headers)).json()
    assert [e["text"] for e in page["entries"]] == ["line 0", "line 1"] and page["has_more"] is True
    rest = (await client.get(f"/v2/conversations/{cid}/transcript?after={page['entries'][-1]['id']}",
                             headers=headers)).json()
    assert [(e["kind"], e["text"], e["self"]) for e in rest["entries"]] == [
        ("speech", "line 2", False), ("chat", "sent by the PAL", True)]
    assert rest["next_cursor"] is None
    # The opaque cursor pages the same way (?limit=&cursor=, as every REST list).
    by_cursor = (await client.get(f"/v2/conversations/{cid}/transcript",
                                  params={"limit": 2, "cursor": page["next_cursor"]}, headers=headers)).json()
    assert [e["text"] for e in by_cursor["entries"]] == ["line 2", "sent by the PAL"]
    assert by_cursor["has_more"] is False and by_cursor["next_cursor"] is None
    bad_cursor = await client.get(f"/v2/conversations/{cid}/transcript", params={"cursor": "nope"}, headers=headers)
    assert bad_cursor.status_code == 400 and bad_cursor.json()["field"] == "cursor"
    assert (await client.get(f"/v2/conversations/{cid}/transcript?first=0", headers=headers)).status_code == 400
    assert (await client.get(f"/v2/conversations/{cid}/transcript",
                             headers={"x-api-key": other_api_key})).status_code == 404
    query = ("query($c: ID!, $first: Int, $after: String) { transcript(conversationId: $c, first: $first, "
             "after: $after) { pageInfo { hasNextPage endCursor } nodes { kind speaker text at self } } }")
    got = await graphql(client, api_key, query, c=cid)
    assert got["data"]["transcript"]["nodes"][3] == {"kind": "CHAT", "speaker": "Anna", "text": "sent by the PAL",
                                                     "at": "2026-12-01T10:00:05Z", "self": True}
    first = (await graphql(client, api_key, query, c=cid, first=3))["data"]["transcript"]
    assert first["pageInfo"]["hasNextPage"] is True
    last = (await graphql(client, api_key, query, c=cid, after=first["pageInfo"]["endCursor"]))["data"]["transcript"]
    assert [e["text"] for e in last["nodes"]] == ["sent by the PAL"] and not last["pageInfo"]["hasNextPage"]


async def test_transcript_subscription_sends_stored_lines_then_live_ones(server, api_key, conversation):
    cid = conversation["conversation_id"]
    relay = relay_for(conversation)
    relay.on_caption(Caption("Alex", "before", True, AT, "l0"))
    await relay.close()
    query = "subscription($c: ID!) { conversationTranscript(conversationId: $c) { id kind speaker text self } }"
    async with gql_socket(server, api_key) as sock:
        await sock.subscribe("t", query, c=cid)
        first = (await sock.data("t"))["conversationTranscript"]
        assert (first["text"], first["kind"]) == ("before", "SPEECH") and first["id"]
        relay = relay_for(conversation)
        await asyncio.sleep(0.3)  # the subscription is set up before the stored lines are read
        relay.on_caption(Caption("Alex", "partial", False, AT, "l1"))  # not a line yet
        relay.on_caption(Caption("Alex", "after", True, AT, "l1"))
        relay.on_chat(ChatMessage("Bo", "hi all", AT))
        live = [(await sock.data("t"))["conversationTranscript"] for _ in range(2)]
        await relay.close()
        assert [(e["text"], e["kind"], e["speaker"]) for e in live] == [("after", "SPEECH", "Alex"),
                                                                          ("hi all", "CHAT", "Bo")]
        assert await sock.silent("t")


# --- one conversation per bot run -------------------------------------------------------------------

async def test_a_claimed_calendar_join_gets_a_conversation(client, api_key, redis_queue):
    pal = await make_pal(api_key, "anna")
    join_pk = await make_join(pal, in_minutes=0)  # no conversation, as a calendar join
    headers = {"x-api-key": api_key}
    before = (await client.get(f"/v2/joins/{join_pk}", headers=headers)).json()
    assert before["conversation_id"] is None
    run = await bot_runs.claim(join_pk, 1, now=datetime.now(timezone.utc), holder="test:1")
    assert run is not None and run.conversation_id and run.conversation_pk
    view = (await client.get(f"/v2/joins/{join_pk}", headers=headers)).json()
    assert view["conversation_id"] == run.conversation_id
    conversation = (await client.get(f"/v2/conversations/{run.conversation_id}", headers=headers)).json()
    assert (conversation["join_id"], conversation["meeting_url"], conversation["face_id"]) == (
        join_pk, URL, "r90bbd427f71")
    got = await graphql(client, api_key, "query($id: ID!) { join(id: $id) { conversationId } }", id=join_pk)
    assert got["data"]["join"]["conversationId"] == run.conversation_id
    listed = (await client.get(f"/v2/pals/{pal.pal_id}/joins", headers=headers)).json()["data"]
    assert listed[0]["conversation_id"] == run.conversation_id
    # A re-dispatched run of the same join keeps its conversation.
    assert await bot_runs.hand_back(run, now=datetime.now(timezone.utc))
    again = await bot_runs.claim(join_pk, 2, now=datetime.now(timezone.utc), holder="test:2")
    assert again is not None and again.conversation_id == run.conversation_id
    assert await Conversation.count() == 1
    assert (await Join.select(Join.conversation).where(Join.id == join_pk).first())["conversation"] == run.conversation_pk
