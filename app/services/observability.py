"""What an operator's probes read from PostgreSQL and Redis: readiness, and the gauges of a scrape.

* `readiness()` asks each dependency of app/outages.py (PostgreSQL `SELECT 1` through the
  pool, Redis `PING`) concurrently, each bounded by READY_TIMEOUT_SECONDS: GET /readyz.
* `refresh_scrape_gauges(now)` sets the gauges that are state rather than events (outbox
  backlog and oldest age, arq queue depth) just before the API renders /metrics, so they
  are as fresh as the scrape and cost nothing between scrapes. A source that does not
  answer in time leaves its gauges out of that scrape and `pal_scrape_source_up` at 0.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from app import metrics, outages
from app.config import get_settings
from app.keys import ARQ_QUEUE
from app.redis_client import redis
from app.services import deliveries, outbox, webhook_events

log = logging.getLogger(__name__)

OK = "ok"
# Every kind of delivery is reported, 0 when none waits (others found in the table too).
OUTBOX_KINDS = (outbox.KIND, webhook_events.KIND)


def _failure(exc: BaseException) -> str:
    """What /readyz says about a failed check: its kind, never an address or a password."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {get_settings().ready_timeout:g} s"
    kind = "unreachable" if outages.dependency_of(exc) else "error"
    return f"{kind} ({type(exc).__name__})"


async def _check(probe: Callable[[], Awaitable[None]], timeout: float) -> str:
    try:
        async with asyncio.timeout(timeout):
            await probe()
        return OK
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.debug("readiness check failed", exc_info=True)
        return _failure(exc)


async def readiness() -> dict[str, str]:
    """{"postgresql": "ok" | why not, "redis": ...}: every dependency, asked at once."""
    timeout = get_settings().ready_timeout
    names = list(outages.PROBES)
    results = await asyncio.gather(*(_check(outages.PROBES[name], timeout) for name in names))
    return {name.lower(): result for name, result in zip(names, results)}


async def _outbox(now: datetime) -> None:
    found = await deliveries.backlog()
    for kind in {*OUTBOX_KINDS, *found}:
        row = found.get(kind)
        pending = row["pending"] if row else 0
        oldest = row["oldest"] if row else None
        metrics.OUTBOX_BACKLOG.labels(kind).set(pending)
        metrics.OUTBOX_OLDEST_AGE.labels(kind).set(max((now - oldest).total_seconds(), 0.0) if oldest else 0.0)


async def _queue(now: datetime) -> None:
    now_ms = int(now.timestamp() * 1000)
    async with redis().pipeline(transaction=False) as pipe:
        pipe.zcount(ARQ_QUEUE, "-inf", now_ms)
        pipe.zcard(ARQ_QUEUE)
        due, total = await pipe.execute()
    metrics.QUEUE_JOBS.labels("due").set(due)
    metrics.QUEUE_JOBS.labels("deferred").set(max(total - due, 0))


async def _refresh(source: str, read: Callable[[datetime], Awaitable[None]], gauges: tuple,
                   now: datetime, timeout: float) -> None:
    try:
        async with asyncio.timeout(timeout):
            await read(now)
        metrics.SCRAPE_SOURCE_UP.labels(source).set(1)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        for gauge in gauges:
            gauge.clear()  # absent rather than stale: an alert on the value must not see an old one
        metrics.SCRAPE_SOURCE_UP.labels(source).set(0)
        log.debug("metrics: could not read %s: %s", source, _failure(exc))


async def refresh_scrape_gauges(now: datetime) -> None:
    """Read the outbox (PostgreSQL) and the queue (Redis) into their gauges, at once, bounded."""
    timeout = get_settings().ready_timeout
    await asyncio.gather(
        _refresh("postgresql", _outbox, (metrics.OUTBOX_BACKLOG, metrics.OUTBOX_OLDEST_AGE), now, timeout),
        _refresh("redis", _queue, (metrics.QUEUE_JOBS,), now, timeout),
    )
