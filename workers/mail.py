"""arq jobs for mail: ingest one stored message, re-enqueue forgotten ones, flush the outbox.

The outbox holds replies and webhook calls alike (app/services/deliveries.py); flush_outbox
sends every kind that is due. The worker's sender loop (workers/settings.py) does the same as
soon as rows are added; the cron only catches up after outages."""

from __future__ import annotations

import logging
from typing import Any

from app.clock import utcnow
from app.keys import JOB_FLUSH_OUTBOX
from app.queue import enqueue
from app.services.inbound import requeue_unprocessed
from app.services import deliveries
from app.services import webhooks  # noqa: F401 - registers the webhook kind of delivery
from app.services.invites import process_inbound
from app.services.outbox import send_due

log = logging.getLogger(__name__)


async def ingest_message(ctx: dict[str, Any], message_pk: int) -> dict[str, Any]:
    clock = ctx.get("clock", utcnow)
    result = await process_inbound(message_pk, now=clock(), dnsfunc=ctx.get("dkim_dns"))
    # Send this message's replies now rather than after another queue hop; whatever
    # fails stays in the outbox for the cron to retry.
    try:
        await send_due(clock())
    except Exception:
        log.exception("outbox flush after message %s failed; the cron will retry", message_pk)
        await enqueue(JOB_FLUSH_OUTBOX)
    return result


async def flush_outbox(ctx: dict[str, Any]) -> int:
    """Send every due delivery (replies and webhooks); returns how many went out."""
    return await deliveries.run_due(ctx.get("clock", utcnow)())


async def requeue_messages(ctx: dict[str, Any]) -> int:
    return await requeue_unprocessed(ctx.get("clock", utcnow)())
