"""Agent links (app/services/agent_link.py): a bot run dials its PAL's layers.realtime.websocket_url.

The agent is a local `websockets` server on 127.0.0.1 (listed in AGENT_ALLOWED_HOSTS). The bot
side is faked as in tests/integration/test_media_stream.py: WorkerRelay and workers/joins.py's
glue, called as a bot would call them; real PostgreSQL and Redis.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from app.config import reset_settings
from app.domain.agent_links import verify
from app.services import agent_link
from app.services import pals as pal_service
from app.services.accounts import authenticate
from app.services.conversations import create_conversation
from app.tables import Conversation
from tests.integration.test_live_status import make_pal
from tests.integration.test_media_stream import AT, URL, fake_bot, next_command, pcm
from workers.meet_bot.channels import Caption, Clear, Say, SendChat, SpeakAudio


class Agent:
    """A websockets server on a free loopback port; every connection goes to `connections`."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[ServerConnection] = asyncio.Queue()
        self.port = 0

    async def handler(self, ws: ServerConnection) -> None:
        await self.connections.put(ws)
        await ws.wait_closed()

    async def next(self, timeout: float = 10) -> ServerConnection:
        return await asyncio.wait_for(self.connections.get(), timeout)


@asynccontextmanager
async def agent_server(**kwargs: Any) -> AsyncIterator[Agent]:
    agent = Agent()
    async with serve(agent.handler, "127.0.0.1", 0, **kwargs) as server:
        agent.port = server.sockets[0].getsockname()[1]
        yield agent


@pytest.fixture
def allow_loopback(monkeypatch):
    monkeypatch.setenv("AGENT_ALLOWED_HOSTS", "127.0.0.1")
    reset_settings()
    yield
    monkeypatch.delenv("AGENT_ALLOWED_HOSTS")
    reset_settings()


async def pal_with_agent(api_key: str, url: str | None) -> dict[str, Any]:
    """A PAL (its agent URL set through the PATCH rules) and a conversation of it."""
    pal = await make_pal(api_key, "anna")
    account = await authenticate(api_key)
    if url:
        await pal_service.patch_pal(account.id, pal.pal_id, [
            {"op": "add", "path": "/layers/realtime/websocket_url", "value": url}])
    view = await create_conversation(account.id, {"pal_id": pal.pal_id, "meeting_url": URL},
                                     now=datetime.now(timezone.utc))
    row = await Conversation.select(Conversation.id).where(
        Conversation.conversation_id == view["conversation_id"]).first()
    return {**view, "pk": row["id"], "pal": pal}


async def recv(ws: Any) -> Any:
    message = await asyncio.wait_for(ws.recv(), 10)
    return message if isinstance(message, bytes) else json.loads(message)


async def started(ws: Any, conversation_id: str) -> None:
    assert await recv(ws) == {"type": "started", "conversation_id": conversation_id, "sample_rate": 16000,
                              "encoding": "pcm_s16le", "channels": 1}


async def test_agent_hears_the_meeting_and_answers_into_it(api_key, redis_queue, allow_loopback, caplog):
    caplog.set_level(logging.INFO, logger="app.services.agent_link")
    async with agent_server() as agent:
        url = f"ws://127.0.0.1:{agent.port}/agents/anna?token=kept-out-of-logs"
        conversation = await pal_with_agent(api_key, url)
        cid = conversation["conversation_id"]
        async with fake_bot(conversation) as (relay, channels):
            link = agent_link.for_run(conversation["pal"].pk, cid)  # as workers/joins.py starts it
            link.start()
            try:
                ws = await agent.next()
                # Signed with the account's key material: the agent checks it with its own key.
                headers = {name: ws.request.headers[name] for name in
                           ("x-pal-timestamp", "x-pal-conversation", "x-pal-signature", "x-pal-id")}
                assert headers["x-pal-conversation"] == cid
                assert headers["x-pal-id"] == conversation["pal"].pal_id
                assert headers["x-pal-signature"].startswith("v1=")
                assert verify(api_key, headers, now=time.time())
                assert not verify(api_key + "x", headers, now=time.time())
                assert ws.request.path == "/agents/anna?token=kept-out-of-logs"
                await started(ws, cid)

                # The meeting, as the bot reports it, reaches the agent.
                channels.on_audio(pcm())
                channels.on_caption(Caption("Alex", "Hello there", True, AT, "l1"))
                relay.on_status("in_call", None)
                assert await recv(ws) == pcm()
                assert await recv(ws) == {"type": "transcript", "speaker": "Alex", "text": "Hello there",
                                          "final": True, "at": "2026-12-01T10:00:00Z", "line_id": "l1"}
                assert await recv(ws) == {"type": "status", "status": "in_call", "reason": None}

                # The agent's voice and commands reach the bot's queue; bad frames get an error.
                await ws.send(pcm(1600))
                await ws.send(json.dumps({"type": "say", "text": "Hi Alex"}))
                await ws.send(json.dumps({"type": "chat", "text": "Notes follow"}))
                await ws.send(json.dumps({"type": "clear"}))
                assert await next_command(channels) == SpeakAudio(pcm(1600), live=True)
                assert await next_command(channels) == Say("Hi Alex")
                assert await next_command(channels) == SendChat("Notes follow")
                assert await next_command(channels) == Clear()
                for bad, fragment in [(b"\x01\x02\x03", "even number"), ("nope", "must be JSON"),
                                      (json.dumps({"type": "say", "text": "x" * 2001}), "too long")]:
                    await ws.send(bad)
                    error = await recv(ws)
                    assert error["type"] == "error" and fragment in error["message"], error

                # The agent drops: the bot reconnects (backoff from 0.5 s), signs again, starts again.
                await ws.close(1011, "agent restarting")
                again = await agent.next()
                assert verify(api_key, {k: again.request.headers[k] for k in headers}, now=time.time())
                await started(again, cid)
                channels.on_caption(Caption("Alex", "Still there?", True, AT, "l2"))
                assert (await recv(again))["text"] == "Still there?"

                # The run ends: the final status is delivered, then the link closes normally.
                relay.on_status("left", "meeting_ended")
                await relay.close()
            finally:
                await link.close()
            assert await recv(again) == {"type": "status", "status": "left", "reason": "meeting_ended"}
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(again.recv(), 5)
            assert closed.value.rcvd.code == 1000
    assert link.stats.connects == 2 and link.stats.refused == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "app.services.agent_link"]
    assert sum("connected to ws://127.0.0.1" in line for line in lines) == 2, lines
    assert sum("disconnected from" in line and "1011" in line for line in lines) == 1, lines
    assert not any("kept-out-of-logs" in line for line in lines), lines


async def test_unlisted_loopback_agent_is_refused_without_a_connection(api_key, redis_queue, caplog, monkeypatch):
    monkeypatch.delenv("AGENT_ALLOWED_HOSTS", raising=False)
    reset_settings()
    caplog.set_level(logging.INFO, logger="app.services.agent_link")
    accepted = []
    server = await asyncio.start_server(lambda r, w: (accepted.append(1), w.close()), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        conversation = await pal_with_agent(api_key, f"ws://127.0.0.1:{port}/")
        link = agent_link.for_run(conversation["pal"].pk, conversation["conversation_id"])
        link.start()
        for _ in range(100):
            if link.stats.refused >= 2:  # refused, then refused again after the backoff
                break
            await asyncio.sleep(0.05)
        await link.close()
    finally:
        server.close()
        await server.wait_closed()
    assert link.stats.refused >= 2 and link.stats.connects == 0 and link.stats.attempts >= 2
    assert accepted == []
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1, refusals  # one line per reason, not per retry
    assert "127.0.0.1 (loopback)" in refusals[0] and "AGENT_ALLOWED_HOSTS" in refusals[0]


async def test_a_pal_without_an_agent_url_starts_nothing(api_key, redis_queue):
    conversation = await pal_with_agent(api_key, None)
    link = agent_link.for_run(conversation["pal"].pk, conversation["conversation_id"])
    link.start()
    await asyncio.wait_for(link._task, 5)  # returns at once
    await link.close()
    assert link.stats.attempts == 0


async def test_a_slow_agent_is_disconnected_then_reconnected(api_key, redis_queue, allow_loopback, monkeypatch):
    monkeypatch.setattr(agent_link, "SEND_QUEUE", 8)
    monkeypatch.setattr(agent_link, "SEND_TIMEOUT_SECONDS", 1.0)
    # max_queue=1: the server stops reading its socket once one frame waits unread.
    async with agent_server(max_queue=1, close_timeout=1) as agent:
        conversation = await pal_with_agent(api_key, f"ws://127.0.0.1:{agent.port}/")
        async with fake_bot(conversation) as (relay, channels):
            link = agent_link.for_run(conversation["pal"].pk, conversation["conversation_id"])
            link.start()
            try:
                first = await agent.next()  # never reads
                deadline = time.monotonic() + 30
                while link.stats.too_slow == 0 and time.monotonic() < deadline:
                    for _ in range(200):
                        channels.on_audio(pcm(1600))
                    await asyncio.sleep(0.05)
                assert link.stats.too_slow == 1
                second = await agent.next()
                await started(second, conversation["conversation_id"])
                assert second is not first and link.stats.connects == 2
            finally:
                await link.close()


@pytest.mark.parametrize("value, fragment", [
    ("http://agent.example.com/", "ws:// or wss://"),
    ("wss://user:pw@agent.example.com/", "credentials"),
    ("wss://agent.example.com/" + "x" * 3000, "at most"),
    (5, "string"),
])
async def test_patch_with_a_bad_websocket_url_is_400(client, api_key, value, fragment):
    headers = {"x-api-key": api_key}
    created = await client.post("/v2/pals", headers=headers, json={"pal_name": "Anna"})
    pal_id = created.json()["pal_id"]
    response = await client.patch(f"/v2/pals/{pal_id}", headers=headers, json=[
        {"op": "add", "path": "/layers/realtime/websocket_url", "value": value}])
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "layers.realtime.websocket_url"
    assert fragment in response.json()["error"]
    good = await client.patch(f"/v2/pals/{pal_id}", headers=headers, json=[
        {"op": "add", "path": "/layers/realtime/websocket_url", "value": "wss://agent.example.com/pal"}])
    assert good.status_code == 200, good.text
    assert good.json()["layers"]["realtime"] == {"websocket_url": "wss://agent.example.com/pal"}
