"""Inbound mail intake shared by the SMTP server and the webhook: store first, then enqueue."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser

from app import metrics
from app.config import get_settings
from app.domain.mime import storable
from app.keys import JOB_INGEST_MESSAGE, ingest_job_id
from app.queue import enqueue
from app.tables import InboundMessage

log = logging.getLogger(__name__)
RETRY_AFTER = timedelta(minutes=2)
# Why a message ended `failed` (inbound_messages.reason); a failed message is never retried.
RECIPIENTS_GONE = "recipients_gone"  # no recipient PAL exists any more (deleted before or during ingestion)
MAX_ATTEMPTS_REACHED = "max_attempts"  # ingestion failed MAX_INGEST_ATTEMPTS times; last_error says how
LAST_ERROR_CHARS = 1000
_NEVER_FINISHED = "no attempt finished (worker stopped or job timed out)"


def distinct_recipients(recipients: list[str]) -> list[str]:
    """Lower-cased, each once, in the order given (PAL addresses are case-insensitive)."""
    return list(dict.fromkeys(r.strip().lower() for r in recipients if r.strip()))


def _message_id(raw: bytes) -> str:
    try:
        value = BytesHeaderParser().parsebytes(raw[:65536]).get("Message-ID", "")
        return storable(str(value)).strip()[:998]
    except Exception:
        return ""


async def store_message(raw: bytes, *, envelope_from: str, recipients: list[str], source: str,
                        now: datetime) -> int:
    """Persist the message exactly as received; only then may the caller say 250/202."""
    recipients = distinct_recipients(recipients)
    rows = await InboundMessage.insert(InboundMessage(
        received_at=now, source=source, envelope_from=storable(envelope_from)[:320],
        recipients=[storable(r) for r in recipients], message_id=_message_id(raw), raw=raw, status="pending",
    )).returning(InboundMessage.id)
    message_pk = rows[0]["id"]
    metrics.count_inbound_message(source)
    log.info("stored %s message %s from %s for %s (%d bytes)", source, message_pk, envelope_from, recipients, len(raw))
    await enqueue(JOB_INGEST_MESSAGE, message_pk, job_id=ingest_job_id(message_pk))
    return message_pk


def error_text(exc: BaseException) -> str:
    """An exception as stored in inbound_messages.last_error: type and message, bounded."""
    return storable(f"{type(exc).__name__}: {exc}")[:LAST_ERROR_CHARS]


async def record_error(message_pk: int, error: str) -> None:
    """Keep a failed attempt's error on a message that will be tried again."""
    await InboundMessage.update({InboundMessage.last_error: error[:LAST_ERROR_CHARS]}).where(
        InboundMessage.id == message_pk)


async def end_failed(message_pk: int, *, reason: str, now: datetime, last_error: str | None = None,
                     result: dict | None = None, only_pending: bool = False) -> bool:
    """End a message as `failed` with `reason`: neither the cron nor a stray job touches it again.

    Never overrides `processed` (a concurrent attempt that succeeded wins)."""
    values: dict = {InboundMessage.status: "failed", InboundMessage.reason: reason, InboundMessage.failed_at: now}
    if last_error is not None:
        values[InboundMessage.last_error] = last_error[:LAST_ERROR_CHARS]
    if result is not None:
        values[InboundMessage.result] = result
    where = (InboundMessage.id == message_pk) & (
        InboundMessage.status == "pending" if only_pending else InboundMessage.status != "processed")
    return bool(await InboundMessage.update(values).where(where).returning(InboundMessage.id))


async def requeue_unprocessed(now: datetime) -> int:
    """Re-enqueue messages that were stored but never processed (worker or Redis was down,
    or an attempt failed); one that used up MAX_INGEST_ATTEMPTS ends `failed` instead."""
    max_attempts = get_settings().max_ingest_attempts
    rows = await InboundMessage.select(InboundMessage.id, InboundMessage.attempts, InboundMessage.last_error).where(
        (InboundMessage.status == "pending") & (InboundMessage.received_at < now - RETRY_AFTER)
    ).limit(1000)
    count = 0
    for row in rows:
        if row["attempts"] >= max_attempts:
            # Attempts that failed cleanly end the message themselves; these never finished.
            error = row["last_error"] or _NEVER_FINISHED
            ended = await end_failed(row["id"], reason=MAX_ATTEMPTS_REACHED, now=now, last_error=error,
                                     only_pending=True)
            if ended:
                log.error("message %s: failed (%s) after %d attempts, not retried: %s",
                          row["id"], MAX_ATTEMPTS_REACHED, row["attempts"], error)
            continue
        # A fresh job id per attempt: arq keeps finished job ids for a while.
        if await enqueue(JOB_INGEST_MESSAGE, row["id"], job_id=ingest_job_id(row["id"], row["attempts"])):
            count += 1
    return count
