"""arq crons for the join plan: extend horizons and restore lost jobs (every minute), recover
lost bots (every few seconds). The work itself is app/services/joins.py's and bot_runs.py's."""

from __future__ import annotations

import logging
from typing import Any

from app.clock import utcnow
from app.keys import RECONCILE_LOCK
from app.services.bot_runs import recover_tick, tick_lock
from app.services.joins import reconcile

log = logging.getLogger(__name__)
# Far above a tick (12.5 s at 100k PALs, docs/benchmarks.md), short enough that a worker
# killed mid-tick holds planning up for two minutes at most.
RECONCILE_LOCK_SECONDS = 120


async def reconcile_joins(ctx: dict[str, Any]) -> dict[str, int]:
    """One tick at a time across all workers: arq gives each minute's cron run its own
    job id, so a slow tick would otherwise overlap the next and re-plan the same events."""
    async with tick_lock(RECONCILE_LOCK, RECONCILE_LOCK_SECONDS) as mine:
        if not mine:
            log.info("reconcile: previous tick still running; skipping this one")
            return {"skipped": 1}
        result = await reconcile(ctx.get("clock", utcnow)())
    if any(result.values()):
        log.info("reconcile: %s", result)
    return result


async def recover_bots(ctx: dict[str, Any]) -> dict[str, int]:
    """Re-dispatch joins whose worker died (their bot lease expired): see app/services/bot_runs.py."""
    result = await recover_tick(ctx.get("clock", utcnow)())
    if result.get("bots_recovered"):
        log.warning("recover: %s", result)
    return result
