"""The reply outbox: iMIP replies are stored first, then sent with retries and backoff."""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta
from email.message import EmailMessage
from urllib.parse import urlparse

import aiosmtplib

from app import metrics
from app.config import get_settings
from app.services.events import record_event
from app.tables import OutboundEmail

log = logging.getLogger(__name__)
MAX_ATTEMPTS = 12
CLAIM_LEASE = timedelta(minutes=5)


def backoff(attempts: int) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at one hour."""
    return timedelta(seconds=min(30 * 2 ** max(attempts - 1, 0), 3600))


MAX_KEY = 500  # outbound_emails.dedupe_key is VARCHAR(500)


def fit_key(key: str) -> str:
    """The dedupe key as stored: a long one keeps its head and ends in a hash of the whole,
    so keys that differ only at the end (SEQUENCE, PARTSTAT after a long UID) stay distinct."""
    if len(key) <= MAX_KEY:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{key[:MAX_KEY - len(digest) - 1]}#{digest}"


async def enqueue_email(
    *, pal_pk: int | None, dedupe_key: str, mail_from: str, rcpt_to: str, message: EmailMessage, now: datetime
) -> bool:
    """Store a message to send; False when the same dedupe key was queued before."""
    rows = await OutboundEmail.insert(
        OutboundEmail(
            pal=pal_pk, dedupe_key=fit_key(dedupe_key), mail_from=mail_from, rcpt_to=rcpt_to,
            message=message.as_bytes(), status="pending", attempts=0, next_attempt_at=now, created_at=now,
        )
    ).on_conflict(target=OutboundEmail.dedupe_key, action="DO NOTHING").returning(OutboundEmail.id)
    return bool(rows)


async def _claim(now: datetime, limit: int) -> list[dict]:
    # Claiming moves next_attempt_at forward, so two workers never send the same row,
    # and a worker that dies mid-send leaves the row to be retried after the lease.
    return await OutboundEmail.raw(
        """
        UPDATE outbound_emails SET next_attempt_at = {}
        WHERE id IN (
            SELECT id FROM outbound_emails
            WHERE status = 'pending' AND next_attempt_at <= {}
            ORDER BY next_attempt_at LIMIT {} FOR UPDATE SKIP LOCKED)
        RETURNING id, pal, mail_from, rcpt_to, message, attempts, dedupe_key
        """,
        now + CLAIM_LEASE, now, limit,
    )


async def _send(raw: bytes, mail_from: str, rcpt_to: str) -> None:
    url = urlparse(get_settings().smtp_relay_url)
    await aiosmtplib.send(
        raw,
        sender=mail_from,
        recipients=[rcpt_to],
        hostname=url.hostname or "127.0.0.1",
        port=url.port or (465 if url.scheme == "smtps" else 25),
        use_tls=url.scheme == "smtps",
        start_tls=None if url.scheme == "smtps" else False,
        username=url.username,
        password=url.password,
        timeout=20,
    )


async def send_due(now: datetime, limit: int = 50) -> int:
    """Send what is due; returns how many went out."""
    sent = 0
    for row in await _claim(now, limit):
        attempts = row["attempts"] + 1
        try:
            await _send(bytes(row["message"]), row["mail_from"], row["rcpt_to"])
        except Exception as exc:
            failed = attempts >= MAX_ATTEMPTS
            await OutboundEmail.update(
                {
                    OutboundEmail.attempts: attempts,
                    OutboundEmail.last_error: str(exc)[:1000],
                    OutboundEmail.status: "failed" if failed else "pending",
                    OutboundEmail.next_attempt_at: now + backoff(attempts),
                }
            ).where(OutboundEmail.id == row["id"])
            metrics.count_reply("gave_up" if failed else "failed")
            log.warning("reply %s to %s failed (attempt %s): %s", row["id"], row["rcpt_to"], attempts, exc)
            if row["pal"]:
                await record_event(row["pal"], "reply_failed", {
                    "to": row["rcpt_to"], "attempt": attempts, "error": str(exc)[:300], "final": failed,
                })
            continue
        await OutboundEmail.update(
            {OutboundEmail.attempts: attempts, OutboundEmail.status: "sent", OutboundEmail.sent_at: now,
             OutboundEmail.last_error: None}
        ).where(OutboundEmail.id == row["id"])
        sent += 1
        metrics.count_reply("sent")
        if row["pal"]:
            await record_event(row["pal"], "reply_sent", {"to": row["rcpt_to"], "key": row["dedupe_key"]})
    return sent
