"""Inbound mail intake shared by the SMTP server and the webhook: store first, then enqueue."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from email.parser import BytesHeaderParser

from app.domain.mime import storable
from app.keys import JOB_INGEST_MESSAGE, ingest_job_id
from app.queue import enqueue
from app.tables import InboundMessage

log = logging.getLogger(__name__)
RETRY_AFTER = timedelta(minutes=2)
MAX_ATTEMPTS = 5


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
    log.info("stored %s message %s from %s for %s (%d bytes)", source, message_pk, envelope_from, recipients, len(raw))
    await enqueue(JOB_INGEST_MESSAGE, message_pk, job_id=ingest_job_id(message_pk))
    return message_pk


async def requeue_unprocessed(now: datetime) -> int:
    """Re-enqueue messages that were stored but never processed (worker or Redis was down)."""
    rows = await InboundMessage.select(InboundMessage.id, InboundMessage.attempts).where(
        (InboundMessage.status == "pending") & (InboundMessage.received_at < now - RETRY_AFTER)
    ).limit(1000)
    count = 0
    for row in rows:
        if row["attempts"] >= MAX_ATTEMPTS:
            await InboundMessage.update({InboundMessage.status: "failed"}).where(InboundMessage.id == row["id"])
            log.error("message %s failed %s times; giving up", row["id"], row["attempts"])
            continue
        # A fresh job id per attempt: arq keeps finished job ids for a while.
        if await enqueue(JOB_INGEST_MESSAGE, row["id"], job_id=ingest_job_id(row["id"], row["attempts"])):
            count += 1
    return count
