"""Live status over graphql-transport-ws: a real API process, a real worker process, real Redis.

The API runs under uvicorn in a subprocess and the "worker" is another Python
process that calls set_status / record_event, so every event here crosses a
process boundary through PostgreSQL and Redis, as in production.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from app.services import pals as pal_service
from app.services.accounts import authenticate
from app.tables import Conversation, Join, JoinStatusChange
from tests.fixtures import graphql
from tests.servers import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
SUB_LIMIT = 4
ALLOWED_ORIGIN = "http://allowed.example"

PAL_EVENTS = """subscription($palId: ID!, $after: Int) { palEvents(palId: $palId, after: $after) {
  __typename
  ... on PalSnapshot { palId lastEventId upcoming { id status } live { id status } }
  ... on PalEvent { id kind payload joinId } } }"""
JOIN_STATUS = "subscription($id: ID!) { joinStatus(joinId: $id) { id status reason history { status } } }"
CONVERSATION_STATUS = """subscription($id: ID!) { conversationStatus(conversationId: $id) {
  conversationId status joinId } }"""


# --- processes ---------------------------------------------------------------

@dataclass
class LiveServer:
    base_url: str
    ws_url: str
    pid: int


_free_port = free_port


@asynccontextmanager
async def start_api(**env: str) -> AsyncIterator[LiveServer]:
    """uvicorn in a subprocess against the test DB and Redis (env from tests/conftest.py)."""
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "app.asgi:create_app", "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning", cwd=ROOT, env={**os.environ, **env})
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(process, base)
        yield LiveServer(base, f"ws://127.0.0.1:{port}/graphql", process.pid)
    finally:
        process.terminate()
        await process.wait()


@pytest.fixture(scope="module")
async def live_server(database: None) -> AsyncIterator[LiveServer]:
    async with start_api(MAX_SUBSCRIPTIONS_PER_CONNECTION=str(SUB_LIMIT), ALLOWED_ORIGINS=ALLOWED_ORIGIN) as server:
        yield server


WORKER = """
import asyncio, json, sys
from datetime import datetime, timezone

async def main():
    from app import db
    from app.redis_client import close_redis
    from app.services.events import record_event
    from app.services.joins import set_status
    await db.open_pool(min_size=1, max_size=2)
    try:
        for step in json.loads(sys.argv[1]):
            if "status" in step:
                await set_status(step["join"], step["status"], step.get("reason"), now=datetime.now(timezone.utc))
            else:
                await record_event(step["pal_pk"], step["kind"], step["payload"])
    finally:
        await close_redis()
        await db.close_pool()

asyncio.run(main())
"""


async def worker_process(*steps: dict[str, Any]) -> None:
    """Run the steps in a separate Python process, as the arq worker would."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, json.dumps(list(steps)), cwd=ROOT, env=dict(os.environ))
    assert await asyncio.wait_for(process.wait(), 30) == 0


# --- graphql-transport-ws client ---------------------------------------------

class GraphQLSocket:
    """A minimal graphql-transport-ws client that sorts messages by operation id."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.pending: dict[str, list[dict[str, Any]]] = defaultdict(list)

    async def subscribe(self, op_id: str, query: str, **variables: Any) -> None:
        await self.ws.send(json.dumps({"id": op_id, "type": "subscribe",
                                       "payload": {"query": query, "variables": variables}}))

    async def complete(self, op_id: str) -> None:
        await self.ws.send(json.dumps({"id": op_id, "type": "complete"}))

    async def message(self, op_id: str, timeout: float = 10) -> dict[str, Any]:
        """The next message for `op_id`: ("next" payload data) or the raw error/complete message."""
        async with asyncio.timeout(timeout):
            while not self.pending[op_id]:
                message = json.loads(await self.ws.recv())
                if message["type"] == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                    continue
                self.pending[message.get("id", "")].append(message)
        return self.pending[op_id].pop(0)

    async def data(self, op_id: str, timeout: float = 10) -> dict[str, Any]:
        message = await self.message(op_id, timeout)
        assert message["type"] == "next" and "errors" not in message["payload"], message
        return message["payload"]["data"]

    async def silent(self, op_id: str, seconds: float = 0.5) -> bool:
        try:
            await self.message(op_id, timeout=seconds)
        except TimeoutError:
            return True
        return False


@asynccontextmanager
async def gql_socket(server: LiveServer, key: str | None, *, origin: str | None = None) -> AsyncIterator[GraphQLSocket]:
    async with connect(server.ws_url, subprotocols=["graphql-transport-ws"], origin=origin) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key} if key else {}}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert ack["type"] == "connection_ack", ack
        yield GraphQLSocket(ws)


# --- data --------------------------------------------------------------------

@dataclass
class PalRef:
    pal_id: str
    pk: int
    account_id: int


async def make_pal(key: str, username: str) -> PalRef:
    account = await authenticate(key)
    view = await pal_service.create_pal(account.id, {
        "pal_name": username.title(), "default_face_id": "r90bbd427f71", "layers": {"conferencing": {"username": username}}})
    return PalRef(view["pal_id"], await pal_service.owned_pal_pk(account.id, view["pal_id"]), account.id)


async def make_join(pal: PalRef, status: str = "scheduled", *, in_minutes: int = 30,
                    conversation: int | None = None) -> int:
    now = datetime.now(timezone.utc)
    start = now + timedelta(minutes=in_minutes)
    rows = await Join.insert(Join(
        pal=pal.pk, conversation=conversation, recurrence_id="", meeting_url="https://meet.google.com/abc-defg-hij",
        start_at=start, end_at=start + timedelta(hours=1), join_at=start - timedelta(minutes=1), status=status,
        plan_version=1, created_at=now, updated_at=now)).returning(Join.id)
    await JoinStatusChange.insert(JoinStatusChange(join=rows[0]["id"], status=status, at=now))
    return rows[0]["id"]


def event(pal: PalRef, kind: str, **payload: Any) -> dict[str, Any]:
    return {"pal_pk": pal.pk, "kind": kind, "payload": payload}


def status(join_id: int, value: str, reason: str | None = None) -> dict[str, Any]:
    return {"join": join_id, "status": value, "reason": reason}


async def events_until(sock: GraphQLSocket, op_id: str, count: int) -> list[dict[str, Any]]:
    return [(await sock.data(op_id))["palEvents"] for _ in range(count)]


# --- tests -------------------------------------------------------------------

async def test_worker_process_events_reach_subscribers(live_server, api_key):
    pal = await make_pal(api_key, "anna")
    join_id = await make_join(pal)
    async with gql_socket(live_server, api_key) as sock:
        await sock.subscribe("pal", PAL_EVENTS, palId=pal.pal_id)
        await sock.subscribe("join", JOIN_STATUS, id=join_id)
        snapshot = (await sock.data("pal"))["palEvents"]
        assert snapshot["__typename"] == "PalSnapshot"
        assert snapshot["upcoming"] == [{"id": str(join_id), "status": "SCHEDULED"}] and snapshot["live"] == []
        assert (await sock.data("join"))["joinStatus"]["status"] == "SCHEDULED"

        await worker_process(status(join_id, "joining"), status(join_id, "waiting_room"), status(join_id, "in_call"),
                             status(join_id, "left", "meeting_ended"),
                             event(pal, "reply_sent", to="alex@acme.com", key="reply:x"))
        events = await events_until(sock, "pal", 5)
        assert [e["kind"] for e in events] == ["JOINING", "WAITING_ROOM", "IN_CALL", "LEFT", "REPLY_SENT"]
        assert [e["joinId"] for e in events] == [str(join_id)] * 4 + [None]
        assert events[3]["payload"]["reason"] == "meeting_ended"  # the payload keeps the stored strings
        ids = [int(e["id"]) for e in events]
        assert ids == sorted(ids) and len(set(ids)) == 5
        statuses = [(await sock.data("join"))["joinStatus"] for _ in range(4)]
        assert [s["status"] for s in statuses] == ["JOINING", "WAITING_ROOM", "IN_CALL", "LEFT"]
        assert statuses[-1]["reason"] == "MEETING_ENDED"
        assert [h["status"] for h in statuses[-1]["history"]] == ["SCHEDULED", "JOINING", "WAITING_ROOM", "IN_CALL", "LEFT"]
        assert await sock.silent("pal")


async def test_conversation_status_follows_its_join(live_server, api_key):
    pal = await make_pal(api_key, "carla")
    now = datetime.now(timezone.utc)
    rows = await Conversation.insert(Conversation(
        conversation_id="c0123456789a", account=pal.account_id, pal=pal.pk, face_id="r90bbd427f71",
        meeting_url="https://meet.google.com/abc-defg-hij", created_at=now)).returning(Conversation.id)
    join_id = await make_join(pal, conversation=rows[0]["id"], in_minutes=0)
    other_join = await make_join(pal)
    async with gql_socket(live_server, api_key) as sock:
        await sock.subscribe("c", CONVERSATION_STATUS, id="c0123456789a")
        first = (await sock.data("c"))["conversationStatus"]
        assert first == {"conversationId": "c0123456789a", "status": "SCHEDULED", "joinId": str(join_id)}
        await worker_process(status(other_join, "cancelled", "not this one"), status(join_id, "joining"),
                             status(join_id, "failed", "meeting_not_found"))
        assert (await sock.data("c"))["conversationStatus"]["status"] == "JOINING"
        assert (await sock.data("c"))["conversationStatus"]["status"] == "FAILED"
        assert await sock.silent("c")


@pytest.mark.parametrize("key", [None, "pal_wrong-key"])
async def test_wrong_or_missing_key_closes_4403(live_server, api_key, key):
    async with connect(live_server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key} if key else {}}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403


async def test_subscribe_before_init_closes_4401(live_server, api_key):
    async with connect(live_server.ws_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": PAL_EVENTS}}))
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd.code == 4401


async def test_other_accounts_pal_join_and_bad_input_are_clear_errors(live_server, api_key, other_api_key):
    pal = await make_pal(api_key, "anna")
    join_id = await make_join(pal)
    async with gql_socket(live_server, other_api_key) as sock:
        await sock.subscribe("p", PAL_EVENTS, palId=pal.pal_id)
        await sock.subscribe("j", JOIN_STATUS, id=join_id)
        await sock.subscribe("neg", PAL_EVENTS, palId=pal.pal_id, after=-1)
        await sock.subscribe("bad", "subscription { palEvents(palId: true) { __typename } }")
        for op_id, code in [("p", "NOT_FOUND"), ("j", "NOT_FOUND"), ("neg", "BAD_USER_INPUT"),
                            ("bad", "GRAPHQL_VALIDATION_FAILED")]:
            message = await sock.message(op_id)
            errors = message["payload"] if message["type"] == "error" else message["payload"]["errors"]
            assert errors[0]["extensions"]["code"] == code, message
            assert "Traceback" not in json.dumps(message)
            if message["type"] == "next":  # an execution error ends the operation
                assert (await sock.message(op_id))["type"] == "complete"
        # The stranger's subscription never started: the PAL's events do not reach it.
        await worker_process(event(pal, "reply_sent", to="x@y.z"))
        assert await sock.silent("p")


async def test_late_subscriber_gets_current_state(live_server, api_key):
    pal = await make_pal(api_key, "anna")
    upcoming = await make_join(pal, in_minutes=60)
    live = await make_join(pal, in_minutes=0)
    finished = await make_join(pal, in_minutes=-120)
    await worker_process(status(live, "joining"), status(live, "in_call"), status(finished, "left"))
    async with gql_socket(live_server, api_key) as sock:
        await sock.subscribe("pal", PAL_EVENTS, palId=pal.pal_id)
        snapshot = (await sock.data("pal"))["palEvents"]
    assert snapshot["upcoming"] == [{"id": str(upcoming), "status": "SCHEDULED"}]
    assert snapshot["live"] == [{"id": str(live), "status": "IN_CALL"}]
    assert snapshot["lastEventId"] is not None


async def test_reconnect_with_last_id_gets_what_it_missed(live_server, api_key):
    pal = await make_pal(api_key, "anna")
    join_id = await make_join(pal, in_minutes=0)
    async with gql_socket(live_server, api_key) as sock:
        await sock.subscribe("pal", PAL_EVENTS, palId=pal.pal_id)
        await sock.data("pal")
        await worker_process(status(join_id, "joining"))
        seen = (await sock.data("pal"))["palEvents"]
    await worker_process(status(join_id, "waiting_room"), status(join_id, "in_call"))  # while disconnected
    async with gql_socket(live_server, api_key) as sock:
        await sock.subscribe("pal", PAL_EVENTS, palId=pal.pal_id, after=int(seen["id"]))
        snapshot = (await sock.data("pal"))["palEvents"]
        assert snapshot["live"] == [{"id": str(join_id), "status": "IN_CALL"}]
        missed = await events_until(sock, "pal", 2)
        assert [e["kind"] for e in missed] == ["WAITING_ROOM", "IN_CALL"]
        assert int(missed[0]["id"]) > int(seen["id"])
        await worker_process(status(join_id, "left"))
        assert (await sock.data("pal"))["palEvents"]["kind"] == "LEFT"
        assert await sock.silent("pal")


async def test_many_subscriptions_on_one_connection_up_to_the_limit(live_server, api_key):
    pals = [await make_pal(api_key, name) for name in ("anna", "bert", "carla")]
    async with gql_socket(live_server, api_key) as sock:
        ops = [f"s{i}" for i in range(SUB_LIMIT)]
        for i, op_id in enumerate(ops):  # two subscriptions share anna's channel
            await sock.subscribe(op_id, PAL_EVENTS, palId=pals[i % len(pals)].pal_id)
        for op_id in ops:
            assert (await sock.data(op_id))["palEvents"]["__typename"] == "PalSnapshot"
        await sock.subscribe("over", PAL_EVENTS, palId=pals[0].pal_id)
        refused = await sock.message("over")
        assert refused["type"] == "error" and "limit" in refused["payload"][0]["message"]

        await worker_process(*(event(p, "reply_sent", to=p.pal_id) for p in pals))
        for i, op_id in enumerate(ops):
            got = (await sock.data(op_id))["palEvents"]
            assert got["payload"]["to"] == pals[i % len(pals)].pal_id
            assert await sock.silent(op_id, 0.2)

        await sock.complete("s3")  # a finished subscription frees its slot
        await asyncio.sleep(0.2)
        await sock.subscribe("again", PAL_EVENTS, palId=pals[1].pal_id)
        assert (await sock.data("again"))["palEvents"]["__typename"] == "PalSnapshot"


async def test_allowed_origins(live_server, api_key):
    async with gql_socket(live_server, api_key, origin=ALLOWED_ORIGIN):
        pass
    with pytest.raises((InvalidStatus, ConnectionClosed)):
        async with gql_socket(live_server, api_key, origin="http://evil.example"):
            pass


async def test_redis_reconnect_loses_no_event(live_server, api_key):
    """Kill the API's PubSub connection: it reconnects and catches up from PostgreSQL."""
    from app.redis_client import close_redis, redis

    pal = await make_pal(api_key, "anna")
    async with gql_socket(live_server, api_key) as sock:
        await sock.subscribe("pal", PAL_EVENTS, palId=pal.pal_id)
        await sock.data("pal")
        client = redis()
        killed = [c for c in await client.client_list() if c.get("name") == f"pal-live-{live_server.pid}"]
        assert killed, "the API's PubSub connection is named after its pid"
        for c in killed:
            await client.client_kill_filter(_id=c["id"])
        await close_redis()
        await worker_process(event(pal, "reply_failed", reason="relay down"), event(pal, "reply_sent", to="a@b.c"))
        got = await events_until(sock, "pal", 2)
        assert [e["kind"] for e in got] == ["REPLY_FAILED", "REPLY_SENT"]


async def test_event_log_paging_query(client, api_key):
    pal = await make_pal(api_key, "anna")
    await worker_process(*(event(pal, "reply_sent", n=n) for n in range(5)))
    query = ("query($id: ID!, $after: String, $first: Int!) { pal(palId: $id) { events(after: $after, first: $first) "
             "{ nodes { id kind payload } pageInfo { endCursor hasNextPage } } } }")
    first = (await graphql(client, api_key, query, id=pal.pal_id, first=2))["data"]["pal"]["events"]
    assert [i["payload"]["n"] for i in first["nodes"]] == [0, 1] and first["pageInfo"]["hasNextPage"]
    rest = (await graphql(client, api_key, query, id=pal.pal_id, first=10, after=first["pageInfo"]["endCursor"]))
    page = rest["data"]["pal"]["events"]
    assert [i["payload"]["n"] for i in page["nodes"]] == [2, 3, 4] and not page["pageInfo"]["hasNextPage"]
    assert page["pageInfo"]["endCursor"] and page["pageInfo"]["endCursor"] != first["pageInfo"]["endCursor"]
    bad = await graphql(client, api_key, query, id=pal.pal_id, first=0)
    assert bad["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
    bad = await graphql(client, api_key, query, id=pal.pal_id, first=5, after="-3")
    assert bad["errors"][0]["extensions"]["field"] == "after"
