"""PostgreSQL or Redis down under a running API: 503 + Retry-After, one log line per outage, resume.

Everything here is real and throwaway: a PostgreSQL cluster initialised into a temporary
directory and a redis-server, each on a free loopback port, and the API started with
`python -m app serve` (uvicorn, app.asgi:create_app, the production logging) against them.
The tests stop and start those servers under the running API; every process they start
is stopped in a `finally`. A websocket subscriber is told (closed with 1013, Try Again
Later) and, once the server is back, resubscribes with `after` = its last event id and
gets what it missed.
"""

from __future__ import annotations

import asyncio
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[2]
PAL_EVENTS = """subscription($palId: ID!, $after: Int) { palEvents(palId: $palId, after: $after) {
  __typename ... on PalSnapshot { lastEventId } ... on PalEvent { id kind payload } } }"""
PALS_QUERY = "{ pals { nodes { palId } } }"
TRY_AGAIN_LATER = 1013


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres() -> list[str]:
    # initdb and postgres refuse to run as root: run them as the 'postgres' system user.
    return ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []


@dataclass
class Postgres:
    bindir: str
    home: str
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/pal"

    def _ctl(self, *args: str) -> None:
        subprocess.run([*_as_postgres(), f"{self.bindir}/pg_ctl", "-D", f"{self.home}/data", *args],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)

    def init(self) -> None:
        subprocess.run([*_as_postgres(), f"{self.bindir}/initdb", "-D", f"{self.home}/data", "-U", "postgres",
                        "--auth=trust", "--no-sync"], check=True, stdout=subprocess.DEVNULL, timeout=60)

    def start(self) -> None:
        self._ctl("-l", f"{self.home}/server.log", "-w", "-o",
                  f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.home} -c fsync=off", "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-w", "-m", mode, "stop")

    def running(self) -> bool:
        return Path(self.home, "data", "postmaster.pid").exists()


@dataclass
class Redis:
    home: str
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly", "no",
             "--dir", self.home, "--logfile", f"{self.home}/redis.log"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                assert self.process.poll() is None, "redis-server exited"
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@dataclass
class Stack:
    pg: Postgres
    redis: Redis
    env: dict[str, str]
    key: str
    base_url: str = ""
    ws_url: str = ""
    log_path: str = ""
    pal_id: str = ""
    process: Any = None
    mark: int = 0

    def log_since_mark(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            handle.seek(self.mark)
            return handle.read()

    def set_mark(self) -> None:
        self.mark = os.path.getsize(self.log_path)


def _run_cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Postgres, Redis, dict[str, str]]]:
    bindirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: [int(x) for x in p.split("/")[4].split(".")])
    if not bindirs or not shutil.which("redis-server"):
        pytest.skip("needs Debian's postgresql and redis-server")
    home = tempfile.mkdtemp(prefix="pal-outage-pg-")
    redis_home = tempfile.mkdtemp(prefix="pal-outage-redis-")
    if os.getuid() == 0:
        shutil.chown(home, "postgres")
    pg = Postgres(bindirs[-1], home, _free_port())
    redis = Redis(redis_home, _free_port())
    try:
        pg.init()
        pg.start()
        redis.start()
        env = {**os.environ, "DATABASE_URL": pg.url, "REDIS_URL": redis.url, "LOG_LEVEL": "INFO",
               "PAL_SERVICES_FILE": os.path.join(redis_home, "services.env"),
               # Keys re-checked every second: the auth path meets the outage too, not only the cache.
               "AUTH_CACHE_SECONDS": "1", "WS_INIT_TIMEOUT_SECONDS": "5"}
        _run_cli(env, "migrate")
        yield pg, redis, env
    finally:
        redis.stop()
        if pg.running():
            subprocess.run([*_as_postgres(), f"{pg.bindir}/pg_ctl", "-D", f"{home}/data", "-w", "-m", "immediate",
                            "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(redis_home, ignore_errors=True)


@pytest.fixture(scope="module")
async def stack(servers) -> AsyncIterator[Stack]:
    pg, redis, env = servers
    key = _run_cli(env, "create-account", "outage").strip().splitlines()[-1]
    port = _free_port()
    log_path = os.path.join(redis.home, "api.log")
    stack = Stack(pg, redis, env, key, f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/graphql", log_path)
    log_file = open(log_path, "wb")
    stack.process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
        env={**env, "API_HOST": "127.0.0.1", "API_PORT": str(port)})
    try:
        async with httpx.AsyncClient(base_url=stack.base_url, headers={"x-api-key": key}, timeout=10) as http:
            for _ in range(200):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert stack.process.returncode is None, open(log_path).read()
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("API did not start")
            created = await http.post("/v2/pals", json={
                "pal_name": "Anna", "default_face_id": "r90bbd427f71",
                "layers": {"conferencing": {"username": "outage-anna"}}})
            assert created.status_code == 200, created.text
            stack.pal_id = created.json()["pal_id"]
        yield stack
    finally:
        if stack.process.returncode is None:
            stack.process.terminate()
            try:
                await asyncio.wait_for(stack.process.wait(), 15)
            except TimeoutError:
                stack.process.kill()
                await stack.process.wait()
        log_file.close()


WORKER = """
import asyncio, sys

async def main():
    from app import db
    from app.redis_client import close_redis
    from app.services.events import record_event
    from app.tables import Pal
    await db.open_pool(min_size=1, max_size=2)
    try:
        pal = await Pal.select(Pal.id).where(Pal.pal_id == sys.argv[1]).first()
        for n, kind in enumerate(sys.argv[2:]):
            await record_event(pal["id"], kind, {"n": n}, pal_id=sys.argv[1])
    finally:
        await close_redis()
        await db.close_pool()

asyncio.run(main())
"""


async def record_events(stack: Stack, *kinds: str) -> None:
    """Record events as a worker process would (row in PostgreSQL, then PUBLISH)."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", WORKER, stack.pal_id, *kinds, cwd=ROOT,
                                                   env=stack.env, stdout=subprocess.DEVNULL,
                                                   stderr=subprocess.DEVNULL)
    assert await asyncio.wait_for(process.wait(), 30) == 0


# --- a minimal graphql-transport-ws client ----------------------------------------

class Socket:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def subscribe(self, op_id: str, query: str, **variables: Any) -> None:
        await self.ws.send(json.dumps({"id": op_id, "type": "subscribe",
                                       "payload": {"query": query, "variables": variables}}))

    async def next(self, timeout: float = 10) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self.ws.recv())
                if message["type"] == "ping":
                    await self.ws.send(json.dumps({"type": "pong"}))
                    continue
                return message

    async def data(self, timeout: float = 10) -> dict[str, Any]:
        message = await self.next(timeout)
        assert message["type"] == "next" and "errors" not in message["payload"], message
        return message["payload"]["data"]

    async def closed_code(self, timeout: float = 10) -> int:
        """Waits for the server to close the socket; its close code."""
        with pytest.raises(ConnectionClosed) as closed:
            async with asyncio.timeout(timeout):
                while True:
                    await self.ws.recv()
        assert closed.value.rcvd is not None, "closed without a close frame"
        return closed.value.rcvd.code


@asynccontextmanager
async def open_socket(stack: Stack) -> AsyncIterator[Socket]:
    async with connect(stack.ws_url, subprotocols=["graphql-transport-ws"], open_timeout=10) as ws:
        try:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": stack.key}}))
        except ConnectionClosed:
            pass  # refused at once (the next recv says with which code)
        yield Socket(ws)


async def acked_socket(stack: Stack, exit_stack) -> Socket:
    sock = await exit_stack.enter_async_context(open_socket(stack))
    ack = await sock.next()
    assert ack["type"] == "connection_ack", ack
    return sock


async def accepted_socket(stack: Stack, exit_stack) -> Socket | None:
    """A socket the server acknowledges, kept open in `exit_stack`; None when it refuses it."""
    async with AsyncExitStack() as attempt:
        candidate = await attempt.enter_async_context(open_socket(stack))
        try:
            if (await candidate.next())["type"] != "connection_ack":
                return None
        except ConnectionClosed:
            return None
        exit_stack.push_async_exit(attempt.pop_all())
        return candidate


async def refused_while_down(stack: Stack) -> int:
    """A new socket opened during the outage: the code it is closed with."""
    async with open_socket(stack) as sock:
        return await sock.closed_code()


async def wait_until(check, *, timeout: float = 20, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def _at(level: str, line: str) -> bool:
    """Whether a log line is at `level` (app.logs' format, or Litestar's once it configured logging)."""
    return re.search(rf"(^|\s){level}(\s|$)", line) is not None


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.status_code, response.text)
    assert int(response.headers["retry-after"]) > 0
    assert "Traceback" not in response.text


async def assert_not_ready(http: httpx.AsyncClient, down: str) -> None:
    """GET /readyz is 503 naming `down` (and only it), while /healthz, the liveness probe, is 200."""
    ready = await http.get("/readyz")
    assert ready.status_code == 503, ready.text
    assert {name for name, result in ready.json()["checks"].items() if result != "ok"} == {down}, ready.text
    assert (await http.get("/healthz")).status_code == 200


async def both_up(stack: Stack) -> None:
    """Each test starts with both servers up and the API answering, whatever the last one left."""
    if not stack.pg.running():
        stack.pg.start()
    if stack.redis.process is None:
        stack.redis.start()
    async with httpx.AsyncClient(base_url=stack.base_url, headers={"x-api-key": stack.key}, timeout=10) as http:
        await wait_until(lambda: _status_is(http, "/v2/pals", 200), what="the API to answer")
    stack.set_mark()


# --- tests -----------------------------------------------------------------------

async def test_postgres_outage_is_a_503_logged_once_and_subscribers_resume(stack: Stack):
    await both_up(stack)
    async with httpx.AsyncClient(base_url=stack.base_url, headers={"x-api-key": stack.key}, timeout=15) as http, \
            AsyncExitStack() as sockets:
        assert (await http.get("/v2/pals")).status_code == 200
        sock = await acked_socket(stack, sockets)
        await sock.subscribe("pal", PAL_EVENTS, palId=stack.pal_id)
        assert (await sock.data())["palEvents"]["__typename"] == "PalSnapshot"
        await record_events(stack, "reply_sent")
        last = (await sock.data())["palEvents"]
        assert last["kind"] == "REPLY_SENT"

        stack.pg.stop()
        started = time.monotonic()
        # REST, with the key still in the cache (the query fails) and then re-checked (auth fails).
        rest = await http.get("/v2/pals")
        assert_unavailable(rest)
        assert rest.json()["code"] == "SERVICE_UNAVAILABLE" and rest.json()["error"]
        gql = await http.post("/graphql", json={"query": PALS_QUERY})
        assert_unavailable(gql)
        assert gql.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        # The subscriber is told: its socket is closed with 1013 (Try Again Later).
        assert await sock.closed_code() == TRY_AGAIN_LATER
        await asyncio.sleep(max(0.0, started + 1.2 - time.monotonic()))  # AUTH_CACHE_SECONDS=1 has passed
        for _ in range(3):
            rest = await http.get(f"/v2/pals/{stack.pal_id}")
            assert_unavailable(rest)
            assert rest.json() == {"error": rest.json()["error"], "code": "SERVICE_UNAVAILABLE"}
            gql = await http.post("/graphql", json={"query": PALS_QUERY})
            assert_unavailable(gql)
            assert [e["extensions"]["code"] for e in gql.json()["errors"]] == ["SERVICE_UNAVAILABLE"]
        # A new socket is refused the same way until PostgreSQL is back.
        assert await refused_while_down(stack) == TRY_AGAIN_LATER
        await assert_not_ready(http, "postgresql")

        stack.pg.start()
        await wait_until(lambda: _status_is(http, "/v2/pals", 200), what="REST to answer 200 again")
        await wait_until(lambda: _status_is(http, "/readyz", 200), what="/readyz to answer 200 again")
        assert (await http.post("/graphql", json={"query": PALS_QUERY})).status_code == 200
        # Events recorded while the subscriber was away...
        await record_events(stack, "reply_failed", "reply_sent")

        # ...reach it when it resubscribes with after = its last event id.
        sock = await wait_until(lambda: accepted_socket(stack, sockets), what="a websocket to be accepted again")
        await sock.subscribe("pal", PAL_EVENTS, palId=stack.pal_id, after=int(last["id"]))
        assert (await sock.data())["palEvents"]["__typename"] == "PalSnapshot"
        missed = [(await sock.data())["palEvents"] for _ in range(2)]
        assert [e["kind"] for e in missed] == ["REPLY_FAILED", "REPLY_SENT"]
        assert int(missed[0]["id"]) > int(last["id"])

    log = await _log_with(stack, "PostgreSQL recovered after")
    assert "Traceback" not in log, log
    warnings = [line for line in log.splitlines() if _at("WARNING", line)]
    assert len(warnings) == 1 and "PostgreSQL is unavailable" in warnings[0], log
    assert not [line for line in log.splitlines() if _at("ERROR", line)], log
    recovered = [line for line in log.splitlines() if "PostgreSQL recovered after" in line]
    assert len(recovered) == 1 and _at("INFO", recovered[0]), log


async def test_redis_outage_keeps_what_needs_no_redis_and_subscribers_resume(stack: Stack):
    await both_up(stack)
    async with httpx.AsyncClient(base_url=stack.base_url, headers={"x-api-key": stack.key}, timeout=15) as http, \
            AsyncExitStack() as sockets:
        sock = await acked_socket(stack, sockets)
        await sock.subscribe("pal", PAL_EVENTS, palId=stack.pal_id)
        assert (await sock.data())["palEvents"]["__typename"] == "PalSnapshot"
        await record_events(stack, "reply_sent")
        last = (await sock.data())["palEvents"]

        stack.redis.stop()
        # The subscriber is told: live events cannot reach it until Redis is back.
        assert await sock.closed_code() == TRY_AGAIN_LATER
        # What does not need Redis keeps working (the queue and the live push are best effort).
        assert (await http.get("/v2/pals")).status_code == 200
        assert (await http.post("/graphql", json={"query": PALS_QUERY})).status_code == 200
        conversation = await http.post("/v2/conversations", json={
            "pal_id": stack.pal_id, "meeting_url": "https://meet.google.com/xgq-epxn-ccp"})
        assert conversation.status_code == 200, conversation.text
        # Events recorded during the outage are in PostgreSQL, not pushed.
        await record_events(stack, "reply_failed")
        assert await refused_while_down(stack) == TRY_AGAIN_LATER
        await assert_not_ready(http, "redis")

        stack.redis.start()
        await wait_until(lambda: _status_is(http, "/readyz", 200), what="/readyz to answer 200 again")

        sock = await wait_until(lambda: accepted_socket(stack, sockets), what="a websocket to be accepted again")
        await sock.subscribe("pal", PAL_EVENTS, palId=stack.pal_id, after=int(last["id"]))
        assert (await sock.data())["palEvents"]["__typename"] == "PalSnapshot"
        missed = [(await sock.data())["palEvents"] for _ in range(2)]  # join_scheduled, reply_failed
        assert [e["kind"] for e in missed] == ["JOIN_SCHEDULED", "REPLY_FAILED"], missed
        # And live events flow again through the new Redis.
        await record_events(stack, "reply_sent")
        assert (await sock.data())["palEvents"]["kind"] == "REPLY_SENT"

    log = await _log_with(stack, "Redis recovered after")
    assert "Traceback" not in log, log
    outage_lines = [line for line in log.splitlines() if _at("WARNING", line) and "Redis is unavailable" in line]
    assert len(outage_lines) == 1, log
    assert not [line for line in log.splitlines() if _at("ERROR", line)], log
    recovered = [line for line in log.splitlines() if "Redis recovered after" in line]
    assert len(recovered) == 1 and _at("INFO", recovered[0]), log


async def _status_is(http: httpx.AsyncClient, path: str, status: int) -> bool:
    try:
        return (await http.get(path)).status_code == status
    except httpx.TransportError:
        return False


async def _log_with(stack: Stack, text: str, timeout: float = 5) -> str:
    """The API's log since the test's mark, once it contains `text` (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while text not in (log := stack.log_since_mark()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return log


async def test_only_connection_failures_count_as_outages():
    """503 is for a server out of reach; a bad query or a full disk stays a 500 with a traceback."""
    import asyncpg
    import redis.asyncio as aioredis
    from redis import exceptions as redis_errors

    from app.outages import POSTGRESQL, REDIS, dependency_of

    for exc in (asyncpg.CannotConnectNowError("the database system is shutting down"),
                asyncpg.AdminShutdownError("terminating connection due to administrator command"),
                asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
                asyncpg.TooManyConnectionsError("sorry, too many clients already"),
                asyncpg.InterfaceError("cannot perform operation: connection is closed"),
                asyncpg.InterfaceError("pool is closing")):
        assert dependency_of(exc) == POSTGRESQL, exc
    for exc in (redis_errors.ConnectionError("Connection closed by server."), redis_errors.TimeoutError(),
                redis_errors.BusyLoadingError()):
        assert dependency_of(exc) == REDIS, exc
    for exc in (asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
                asyncpg.UniqueViolationError("duplicate key"),
                asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
                redis_errors.ResponseError("WRONGTYPE"), OSError(28, "No space left on device"),
                ConnectionRefusedError(111, "not from asyncpg or redis-py"), RuntimeError("a bug"), None):
        assert dependency_of(exc) is None, exc

    # Real refusals, as the drivers raise them (the OSError is told apart by who raised it).
    port = _free_port()
    with pytest.raises(OSError) as refused:
        await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{port}/pal", timeout=2)
    assert dependency_of(refused.value) == POSTGRESQL
    try:
        raise RuntimeError("could not load the PAL") from refused.value
    except RuntimeError as wrapped:
        assert dependency_of(wrapped) == POSTGRESQL
    client = aioredis.from_url(f"redis://127.0.0.1:{port}/0", socket_connect_timeout=2)
    with pytest.raises(redis_errors.ConnectionError) as down:
        await client.ping()
    await client.aclose()
    assert dependency_of(down.value) == REDIS
