"""iMIP replies: stored first as `email` deliveries of the one outbox, then sent with retries.

The outbox itself (claiming, leases, backoff bookkeeping) is app/services/deliveries.py;
this module says how a reply is queued (deduplicated by key), sent over SMTP, retried
and announced (reply_sent / reply_failed PAL events).
"""

from __future__ import annotations

import hashlib
import logging
import random
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlparse

import aiosmtplib

from app import metrics
from app.config import get_settings
from app.domain.backoff import doubling
from app.services import deliveries
from app.services.deliveries import Outcome
from app.services.events import record_event
from app.services.rows import json_value
from app.tables import Delivery

log = logging.getLogger(__name__)
KIND = "email"
MAX_ATTEMPTS = 12


def backoff(attempts: int, *, rng=random.random) -> timedelta:
    """30 s, 1 min, 2 min, ... capped at one hour; jittered into [d/2, d]."""
    return doubling(attempts, first=30, cap=3600, rng=rng)


MAX_KEY = 500  # deliveries.dedupe_key is VARCHAR(500)


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
    rows = await Delivery.insert(
        Delivery(
            delivery_id=deliveries.new_delivery_id(), kind=KIND, pal=pal_pk, dedupe_key=fit_key(dedupe_key),
            body=message.as_bytes(), meta={"mail_from": mail_from, "rcpt_to": rcpt_to},
            status=deliveries.PENDING, attempts=0, next_attempt_at=now, created_at=now,
        )
    ).on_conflict(target=Delivery.dedupe_key, action="DO NOTHING").returning(Delivery.id)
    if rows:
        await deliveries.notify()
    return bool(rows)


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


class EmailKind:
    """Replies over the SMTP relay (SMTP_RELAY_URL): MAX_ATTEMPTS tries, then failed."""

    name = KIND

    async def send(self, row: dict[str, Any], now: datetime) -> Outcome:
        meta = json_value(row["meta"], {})
        try:
            await _send(bytes(row["body"]), meta["mail_from"], meta["rcpt_to"])
        except Exception as exc:
            return Outcome(ok=False, error=str(exc))
        return Outcome(ok=True)

    def retry_at(self, row: dict[str, Any], attempts: int, now: datetime) -> datetime | None:
        return None if attempts >= MAX_ATTEMPTS else now + backoff(attempts)

    async def after(self, row: dict[str, Any], attempts: int, outcome: Outcome, final: bool,
                    now: datetime) -> None:
        rcpt_to = json_value(row["meta"], {}).get("rcpt_to")
        metrics.count_reply("sent" if outcome.ok else "gave_up" if final else "failed")
        if not outcome.ok:
            log.warning("reply %s to %s failed (attempt %s): %s", row["id"], rcpt_to, attempts, outcome.error)
        if not row["pal"]:
            return
        if outcome.ok:
            await record_event(row["pal"], "reply_sent", {"to": rcpt_to, "key": row["dedupe_key"]})
        else:
            await record_event(row["pal"], "reply_failed", {
                "to": rcpt_to, "attempt": attempts, "error": (outcome.error or "")[:300], "final": final,
            })


EMAIL = deliveries.register(EmailKind())


async def send_due(now: datetime, limit: int = deliveries.CLAIM_BATCH) -> int:
    """Send the replies that are due; returns how many went out."""
    return await deliveries.run_due(now, kinds=[KIND], limit=limit)
