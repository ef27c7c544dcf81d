"""Fixtures for tests that touch PostgreSQL, Redis or the HTTP app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app import db
from app.config import reset_settings


@pytest.fixture(scope="session")
async def database() -> AsyncIterator[None]:
    """Migrate the test database once and hold a pool for the session."""
    reset_settings()
    await db.migrate()
    await db.open_pool(min_size=1, max_size=10)
    yield
    await db.close_pool()


async def _truncate() -> None:
    from app.services import accounts
    from app.services.faces import seed_stock_faces

    accounts._auth_cache.clear()  # account ids restart with the truncation

    await db.engine().run_ddl(
        "TRUNCATE accounts, faces, pals, inbound_messages, calendar_events, conversations, "
        "joins, join_status_changes, deliveries, webhook_endpoints, pal_events RESTART IDENTITY CASCADE"
    )
    await seed_stock_faces()


@pytest.fixture
async def clean_db(database: None) -> AsyncIterator[None]:
    """An empty database (stock faces only) for each test; tests may commit freely."""
    await _truncate()
    yield


@pytest.fixture
async def app(clean_db: None):
    from app.asgi import create_app

    return create_app(manage_pool=False)


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
async def api_key(clean_db: None) -> str:
    from app.services.accounts import create_account

    _, key = await create_account("test account")
    return key


@pytest.fixture
async def other_api_key(clean_db: None) -> str:
    from app.services.accounts import create_account

    _, key = await create_account("other account")
    return key


async def graphql(client: httpx.AsyncClient, key: str | None, query: str, **variables: Any) -> dict[str, Any]:
    """POST a GraphQL operation and return the decoded response."""
    headers = {"x-api-key": key} if key else {}
    response = await client.post("/graphql", json={"query": query, "variables": variables}, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


# --- mail, queue and worker -------------------------------------------------

import asyncio  # noqa: E402
import os  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from email import message_from_bytes  # noqa: E402
from email.message import Message  # noqa: E402

from aiosmtpd.smtp import SMTP  # noqa: E402


@dataclass
class SmtpSink:
    """A local SMTP server that keeps what it receives (stands in for the outbound relay)."""

    port: int = 0
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    refuse: bool = False

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refuse:
            return "451 4.3.0 Relay unavailable (test)"
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"

    def parsed(self) -> list[Message]:
        return [message_from_bytes(raw) for _, _, raw in self.messages]


@pytest.fixture
async def smtp_sink() -> AsyncIterator[SmtpSink]:
    from app.config import reset_settings

    sink = SmtpSink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(sink, decode_data=False), host="127.0.0.1", port=0)
    sink.port = server.sockets[0].getsockname()[1]
    os.environ["SMTP_RELAY_URL"] = f"smtp://127.0.0.1:{sink.port}"
    reset_settings()
    yield sink
    server.close()
    await server.wait_closed()


@pytest.fixture
async def redis_queue(clean_db: None):
    """The real Redis test database, emptied; yields the arq pool the app uses."""
    from app.queue import arq_pool, close_arq_pool
    from app.redis_client import close_redis

    await close_arq_pool()
    await close_redis()
    pool = await arq_pool()
    await pool.flushdb()
    yield pool
    await pool.flushdb()
    await close_arq_pool()
    await close_redis()


@pytest.fixture
async def inbound_smtp(clean_db: None, redis_queue) -> AsyncIterator[int]:
    """Our inbound SMTP server on a free loopback port; yields the port."""
    from app.smtp import start_smtp_server

    server = await start_smtp_server(host="127.0.0.1", port=0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


async def run_worker(*, clock=None, functions=None, dkim_dns=None, bot_settings=None, max_bots: int = 2) -> None:
    """Run a real arq worker over the real queue until it is empty (burst mode)."""
    from arq import create_pool
    from arq.worker import Worker

    from app.queue import redis_settings
    from workers.meet_bot.slots import BotSlots
    from workers.settings import WorkerSettings

    ctx: dict[str, Any] = {"bot_slots": BotSlots(max_bots)}
    if clock is not None:
        ctx["clock"] = clock
    if dkim_dns is not None:
        ctx["dkim_dns"] = dkim_dns
    if bot_settings is not None:
        ctx["bot_settings"] = bot_settings
    pool = await create_pool(redis_settings())  # the worker closes its pool when done
    worker = Worker(functions=functions or WorkerSettings.functions, redis_pool=pool, burst=True,
                    poll_delay=0.05, handle_signals=False, ctx=ctx, max_jobs=10, keep_result=0)
    await worker.main()
    await worker.close()
