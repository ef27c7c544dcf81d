"""The connection pool (app/db.py): no reset query on release, and still no state left behind.

Real PostgreSQL. A connection the pool takes back must not stay inside a transaction: the
next request would run in it, and its locks would be held for good.
"""

from __future__ import annotations

import asyncpg

from app import db
from app.services import pals as pal_service
from app.services.accounts import create_account


async def _sessions_in_transaction() -> int:
    async with db.engine().pool.acquire() as connection:
        return await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'")


async def test_a_transaction_left_open_is_rolled_back_on_release(clean_db):
    pool = db.engine().pool
    async with pool.acquire() as connection:
        await connection.execute("BEGIN")
        await connection.execute("SELECT pg_advisory_xact_lock(4242)")
        assert connection.is_in_transaction()
    assert await _sessions_in_transaction() == 0
    # The transaction's lock went with it: another session takes it at once.
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT pg_try_advisory_xact_lock(4242)") is True


async def test_a_read_sends_one_statement_and_no_reset(clean_db):
    account, _ = await create_account("pool")
    pal = await pal_service.create_pal(account.id, {
        "pal_name": "Ada", "system_prompt": "Notes.", "default_face_id": "r90bbd427f71"})
    sent: list[str] = []
    original = asyncpg.connection.Connection.execute
    original_fetchrow = asyncpg.connection.Connection.fetchrow

    async def execute(self, query, *args, **kwargs):
        sent.append(query)
        return await original(self, query, *args, **kwargs)

    async def fetchrow(self, query, *args, **kwargs):
        sent.append(query)
        return await original_fetchrow(self, query, *args, **kwargs)

    asyncpg.connection.Connection.execute = execute
    asyncpg.connection.Connection.fetchrow = fetchrow
    try:
        view = await pal_service.get_pal(account.id, pal["pal_id"])
    finally:
        asyncpg.connection.Connection.execute = original
        asyncpg.connection.Connection.fetchrow = original_fetchrow
    assert view["pal_id"] == pal["pal_id"]
    assert len(sent) == 1 and sent[0].startswith("SELECT"), sent
