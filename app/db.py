"""Database lifecycle: create the database if needed, run migrations, open the pool."""

from __future__ import annotations

import contextlib
import io
import logging
from typing import Any
from urllib.parse import urlparse, urlunparse

import asyncpg

from app.config import get_settings

log = logging.getLogger(__name__)


def engine():
    """The Piccolo engine every table is bound to (from piccolo_conf)."""
    from piccolo.engine import engine_finder

    found = engine_finder()
    assert found is not None, "piccolo_conf.py not found: run from the repository root"
    return found


async def ensure_database(url: str | None = None) -> None:
    """Create the target database when the server is up but the database is not there yet."""
    url = url or get_settings().database_url
    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidCatalogNameError:
        admin = urlunparse(parsed._replace(path="/postgres"))
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
            log.info("created database %s", name)
        except asyncpg.DuplicateDatabaseError:
            pass
    await conn.close()


async def migrate() -> None:
    """Apply every pending Piccolo migration, then make sure stock faces exist."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    from app.services.faces import seed_stock_faces

    await ensure_database()
    with contextlib.redirect_stdout(io.StringIO()) as out:  # Piccolo prints banners
        result = await run_forwards(app_name="all")
    if not result.success:
        raise RuntimeError(f"migrations failed: {result.message}\n{out.getvalue()}")
    await seed_stock_faces()
    log.info("migrations applied")


# How long opening one connection may take. asyncpg waits 60 s by default: with the server
# unreachable (not refusing), every request would hang that long before its 503 (app/outages.py).
CONNECT_TIMEOUT_SECONDS = 5


async def _keep_session(connection: Any) -> None:
    """What a pooled connection needs on release beyond asyncpg's own rollback: nothing.

    asyncpg's default reset sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` on every release: a round trip per request, ~15 % of a one-row read's CPU
    (docs/benchmarks.md). This code leaves no session state on a pooled connection: its
    advisory locks are transaction-scoped (`pg_advisory_xact_lock`), it sets no session
    variables, opens no cursor outside a transaction, and LISTENs on a connection of its
    own (app/services/deliveries.py). An open transaction is still rolled back by asyncpg.
    """


async def open_pool(min_size: int = 2, max_size: int = 10) -> None:
    await engine().start_connection_pool(min_size=min_size, max_size=max_size, timeout=CONNECT_TIMEOUT_SECONDS,
                                         reset=_keep_session)


async def close_pool() -> None:
    await engine().close_connection_pool()
