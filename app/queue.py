"""The arq queue as the API and services see it: enqueue work, never the source of truth."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import datetime, timezone
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings

from app import outages
from app.config import get_settings

log = logging.getLogger(__name__)
_pool: ArqRedis | None = None
_pool_lock = asyncio.Lock()  # concurrent first enqueues would each open (and leak) a pool


def redis_settings() -> RedisSettings:
    return RedisSettings.from_dsn(get_settings().redis_url)


async def arq_pool() -> ArqRedis:
    global _pool
    async with _pool_lock:
        if _pool is None:
            # No connect retries: enqueue is best effort, and callers queue behind this lock.
            _pool = await create_pool(dataclasses.replace(redis_settings(), conn_retries=0))
    return _pool


async def close_arq_pool() -> None:
    global _pool
    if _pool is not None:
        await _pool.aclose()
        _pool = None


async def enqueue(function: str, *args: Any, job_id: str | None = None, at: datetime | None = None) -> bool:
    """Best-effort enqueue: False when Redis is down or the job id is already queued.

    Callers have already committed the work to PostgreSQL, and a cron re-enqueues
    anything Redis lost, so a failure here delays work but never loses it.
    """
    # arq reads the wall clock to score the job and to set its key's expiry
    # (defer + 1 day): a time in its past, e.g. a join the reconciler finds late,
    # would get a negative expiry and be refused, so it runs at once instead.
    if at is not None and at <= datetime.now(timezone.utc):
        at = None
    try:
        pool = await arq_pool()
        job = await pool.enqueue_job(function, *args, _job_id=job_id, _defer_until=at)
        return job is not None
    except Exception as exc:
        if outages.report(exc) is None:  # during an outage, its own log lines say it once
            log.warning("could not enqueue %s%s (%s); the reconciler will retry", function, args, exc)
        return False

