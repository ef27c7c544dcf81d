"""arq cron for the join plan: extend horizons, restore lost jobs, recover lost bots."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from app.clock import utcnow
from app.redis_client import redis
from app.services.joins import ACTIVE, reconcile, schedule_job, set_status
from app.tables import Join

log = logging.getLogger(__name__)
LEASE_SECONDS = 60


def lease_key(join_pk: int) -> str:
    return f"bot-lease:{join_pk}"


async def recover_lost_bots(now) -> int:
    """An active join whose bot lease expired lost its worker: rejoin if the meeting goes on."""
    recovered = 0
    rows = await Join.select().where(
        Join.status.is_in(list(ACTIVE)) & (Join.updated_at < now - timedelta(seconds=LEASE_SECONDS))
    )
    for row in rows:
        if await redis().exists(lease_key(row["id"])):
            continue
        if row["end_at"] is not None and row["end_at"] <= now:
            await set_status(row["id"], "failed", "worker_lost", now=now, only_from=ACTIVE)
            continue
        updated = await set_status(row["id"], "scheduled", "redispatched after worker loss", now=now,
                                   only_from=ACTIVE, version=row["plan_version"], bump_version=True,
                                   extra={Join.join_at: now})
        if updated:
            await schedule_job(updated, now)
            recovered += 1
    return recovered


TICK_LOCK = "reconcile-lock"
TICK_LOCK_SECONDS = 600


async def reconcile_joins(ctx: dict[str, Any]) -> dict[str, int]:
    """One tick at a time across all workers: arq gives each minute's cron run its own
    job id, so a slow tick would otherwise overlap the next and re-plan the same events."""
    if not await redis().set(TICK_LOCK, "1", ex=TICK_LOCK_SECONDS, nx=True):
        log.info("reconcile: previous tick still running; skipping this one")
        return {"skipped": 1}
    try:
        now = ctx.get("clock", utcnow)()
        result = await reconcile(now)
        result["bots_recovered"] = await recover_lost_bots(now)
    finally:
        await redis().delete(TICK_LOCK)
    if any(result.values()):
        log.info("reconcile: %s", result)
    return result
