"""arq WorkerSettings: the worker process's jobs, crons and start-up."""

from __future__ import annotations

import logging
from typing import Any

from arq import cron, func

from app import db, metrics
from app.config import get_settings
from app.keys import JOB_FLUSH_OUTBOX, JOB_INGEST_MESSAGE, JOB_RUN_JOIN
from app.metrics_server import serve_process_metrics
from app.queue import redis_settings
from app.redis_client import close_redis
from app.services import deliveries
from app.services.bot_runs import RECOVER_EVERY_SECONDS
from app.services.invites import announce_sender_auth_mode
from workers.joins import run_join
from workers.mail import flush_outbox, ingest_message, requeue_messages
from workers.meet_bot.models import FAILED_REASONS, LEFT_REASONS
from workers.meet_bot.procs import _stat, descendants, kill_all, pids_with_arg
from workers.meet_bot.slots import BotSlots
from workers.scheduler import reconcile_joins, recover_bots

log = logging.getLogger(__name__)
EVERY_MINUTE = set(range(60))
# A worker killed mid-call is noticed when its bot's lease expires; this cron then sends the
# PAL back (app/services/bot_runs.py, bench/rejoin_bench.py).
RECOVER_SECONDS = set(range(0, 60, RECOVER_EVERY_SECONDS))
MAX_MEETING_SECONDS = 6 * 3600
# The bots' own join reasons are a closed set too: label values of pal_joins_total.
metrics.allow_join_reasons(LEFT_REASONS | FAILED_REASONS)


def orphaned_bot_pids() -> list[int]:
    """Chromium trees of bots whose worker died: their browser was re-parented to init.

    A live worker's bots still have that worker as parent, so several workers on one
    host never kill each other's bots."""
    roots = [pid for pid in pids_with_arg("pal-meet-bot-") if (_stat(pid) or ("", 0))[1] == 1]
    return sorted({p for root in roots for p in descendants(root)})


async def startup(ctx: dict[str, Any]) -> None:
    # A previous worker that died hard may have left its Chromiums behind: no ghost bots.
    ghosts = orphaned_bot_pids()
    if ghosts:
        log.warning("killing %d leftover bot browser processes", len(ghosts))
        kill_all(ghosts)
    await db.open_pool()
    announce_sender_auth_mode()
    slots = ctx["bot_slots"] = BotSlots(get_settings().max_bots)
    metrics.BOTS_RUNNING.set_function(lambda: slots.in_use)
    metrics.BOT_SLOTS.set(slots.max_bots)
    ctx["metrics_server"] = await serve_process_metrics("worker", get_settings().worker_metrics_port)
    # The outbox's sender: replies and webhooks go out as soon as they are stored (NOTIFY).
    ctx["deliveries"] = deliveries.Sender().start()


async def shutdown(ctx: dict[str, Any]) -> None:
    sender = ctx.pop("deliveries", None)
    if sender is not None:
        await sender.stop()
    if ctx.get("metrics_server") is not None:
        await ctx["metrics_server"].close()
    await db.close_pool()
    await close_redis()


class WorkerSettings:
    functions = [
        func(ingest_message, name=JOB_INGEST_MESSAGE, max_tries=5),
        func(flush_outbox, name=JOB_FLUSH_OUTBOX, keep_result=0, max_tries=1),
        # Retries only come from "all bot slots busy" or "the previous run still holds the
        # join's lease"; a join is leased and claimed before it runs, so a retried job can
        # never start a second bot.
        func(run_join, name=JOB_RUN_JOIN, timeout=MAX_MEETING_SECONDS, keep_result=0, max_tries=10_000),
    ]
    cron_jobs = [
        cron(reconcile_joins, minute=EVERY_MINUTE, second=0, run_at_startup=True, keep_result=0, max_tries=1, unique=True),
        cron(recover_bots, second=RECOVER_SECONDS, run_at_startup=True, keep_result=0, max_tries=1, unique=True,
             timeout=60),
        cron(requeue_messages, minute=EVERY_MINUTE, second=30, keep_result=0, max_tries=1, unique=True),
        cron(flush_outbox, name="cron:flush_outbox", minute=EVERY_MINUTE, second=15, keep_result=0, max_tries=1, unique=True),
    ]
    on_startup = startup
    on_shutdown = shutdown
    redis_settings = redis_settings()
    # Bots hold their arq slot for the whole meeting; keep room beyond them for crons and mail.
    max_jobs = get_settings().max_bots + 16
    health_check_interval = 30
    # arq only sees a job when it polls; at its 0.5 s default every invite waited two polls
    # (bench/invite_bench.py). An idle poll is one cheap Redis call.
    poll_delay = 0.05
    allow_abort_jobs = True
    job_timeout = 300
