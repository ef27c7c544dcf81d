"""The one durable outbox: everything the service sends out is a row of `deliveries` first.

Two kinds share it: iMIP replies (`email`, app/services/outbox.py) and webhook calls
(`webhook`, app/services/webhooks.py). Each kind says how to send one row, when to try
again and what to record afterwards; this module does the rest, the same way for both:

- **Claim** with ``FOR UPDATE SKIP LOCKED`` and a **lease** (``lease_until`` + a token): two
  workers never send one row; a worker that dies mid-send leaves its rows to whoever claims
  them after the lease (so a row may go out twice: at least once, receivers dedupe on its id).
- **Order**: rows sharing an ``order_key`` (a webhook endpoint and a PAL) go out one at a
  time in id order: only the oldest pending row of a key is claimable.
- **Retries**: a failed attempt is retried at the time its kind says (exponential backoff
  with jitter), or ends ``failed`` when the kind gives up; nothing is deleted.

Inserting rows ``NOTIFY``s the worker's sender loop (Sender), which also polls, so a lost
notification only delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import asyncpg

from app.clock import Clock, utcnow
from app.config import get_settings
from app.tables import Delivery

log = logging.getLogger(__name__)

CHANNEL = "deliveries"  # PostgreSQL NOTIFY channel: rows were added
LEASE = timedelta(minutes=2)  # longer than any one send may take (SMTP 20 s, HTTP 10 s)
CLAIM_BATCH = 50
MAX_ROUNDS = 40  # claims per run_due call: a cron run stays bounded
POLL_SECONDS = 1.0
PENDING, SENT, FAILED = "pending", "sent", "failed"


def new_delivery_id() -> str:
    return "msg_" + secrets.token_hex(12)


@dataclass(frozen=True)
class Outcome:
    """One attempt: delivered or not, why not, and the HTTP status when there is one."""

    ok: bool
    error: str | None = None
    status: int | None = None


class Kind(Protocol):
    """How one kind of delivery is sent; the outbox does claiming, leases and bookkeeping."""

    name: str

    async def send(self, row: dict[str, Any], now: datetime) -> Outcome: ...

    def retry_at(self, row: dict[str, Any], attempts: int, now: datetime) -> datetime | None:
        """When to try again after `attempts` failed attempts; None gives up (status failed)."""
        ...

    async def after(self, row: dict[str, Any], attempts: int, outcome: Outcome, final: bool,
                    now: datetime) -> None:
        """Record what happened (PAL events, endpoint state)."""
        ...


_KINDS: dict[str, Kind] = {}


def register(kind: Kind) -> Kind:
    """Make a kind sendable by run_due; each kind's module registers itself when imported."""
    _KINDS[kind.name] = kind
    return kind


async def notify() -> None:
    """Wake the sender loops; PostgreSQL delivers it when the surrounding transaction commits."""
    await Delivery.raw("SELECT pg_notify({}, '')", CHANNEL)


async def claim(now: datetime, kinds: Iterable[str], limit: int = CLAIM_BATCH) -> tuple[str, list[dict[str, Any]]]:
    """Lease up to `limit` due rows (heads of their order_key only); returns the lease token."""
    token = secrets.token_hex(16)
    rows = await Delivery.raw(
        """
        UPDATE deliveries SET lease_until = {}, lease_token = {}
        WHERE id IN (
            SELECT d.id FROM deliveries d
            WHERE d.status = 'pending' AND d.next_attempt_at <= {} AND d.kind = ANY({})
              AND (d.lease_until IS NULL OR d.lease_until <= {})
              AND (d.order_key IS NULL OR NOT EXISTS (
                    SELECT 1 FROM deliveries e
                    WHERE e.order_key = d.order_key AND e.status = 'pending' AND e.id < d.id))
            ORDER BY d.next_attempt_at, d.id LIMIT {} FOR UPDATE SKIP LOCKED)
        RETURNING *
        """,
        now + LEASE, token, now, list(kinds), now, limit,
    )
    return token, sorted(rows, key=lambda r: r["id"])


async def _finish(row: dict[str, Any], token: str, kind: Kind, outcome: Outcome, now: datetime) -> bool:
    attempts = row["attempts"] + 1
    retry = None if outcome.ok else kind.retry_at(row, attempts, now)
    values: dict[Any, Any] = {
        Delivery.attempts: attempts, Delivery.lease_until: None, Delivery.lease_token: None,
        Delivery.last_status: outcome.status,
    }
    if outcome.ok:
        values.update({Delivery.status: SENT, Delivery.sent_at: now, Delivery.last_error: None})
    else:
        values.update({Delivery.status: PENDING if retry else FAILED,
                       Delivery.last_error: (outcome.error or "failed")[:1000],
                       Delivery.next_attempt_at: retry or now})
    # Only the lease holder records: a worker that overran its lease lost the row to another.
    done = await Delivery.update(values).where(
        (Delivery.id == row["id"]) & (Delivery.lease_token == token)).returning(Delivery.id)
    if not done:
        log.warning("delivery %s: lease lost while sending; the new holder records it", row["delivery_id"])
        return False
    await kind.after(row, attempts, outcome, retry is None and not outcome.ok, now)
    return outcome.ok


async def _attempt(row: dict[str, Any], token: str, kind: Kind, now: datetime) -> bool:
    try:
        outcome = await kind.send(row, now)
    except Exception as exc:  # a kind's send reports failures; anything else is a failure too
        log.exception("delivery %s (%s): send raised", row["delivery_id"], kind.name)
        outcome = Outcome(ok=False, error=f"{type(exc).__name__}: {exc}")
    return await _finish(row, token, kind, outcome, now)


async def run_due(now: datetime, *, kinds: Iterable[str] | None = None, limit: int = CLAIM_BATCH,
                  rounds: int = MAX_ROUNDS, stopping: Callable[[], bool] = lambda: False) -> int:
    """Send what is due (claimed rows concurrently), again while there is more; returns how
    many were delivered."""
    names = [k for k in (kinds or _KINDS) if k in _KINDS]
    sent = 0
    started = time.monotonic()
    for _ in range(rounds):
        if stopping():
            break
        # Each round leases from its own "now" (the given one plus the time spent so far):
        # a long run must not hand out leases that are already running out.
        at = now + timedelta(seconds=time.monotonic() - started)
        token, rows = await claim(at, names, limit)
        if not rows:
            break
        results = await asyncio.gather(*(_attempt(r, token, _KINDS[r["kind"]], at) for r in rows))
        sent += sum(results)
    return sent


async def replay(delivery_pk: int, now: datetime, *, give_up_at: datetime | None) -> dict[str, Any] | None:
    """Send a row again (same id and body): pending, due now, with a new give-up time."""
    rows = await Delivery.update({
        Delivery.status: PENDING, Delivery.next_attempt_at: now, Delivery.give_up_at: give_up_at,
        Delivery.lease_until: None, Delivery.lease_token: None,
    }).where(Delivery.id == delivery_pk).returning(*Delivery.all_columns())
    if rows:
        await notify()
    return rows[0] if rows else None


async def backlog() -> dict[str, Any]:
    """Pending rows per kind and the oldest one's creation time (operators, metrics)."""
    rows = await Delivery.raw(
        "SELECT kind, count(*) AS pending, min(created_at) AS oldest FROM deliveries "
        "WHERE status = 'pending' GROUP BY kind")
    return {r["kind"]: {"pending": r["pending"], "oldest": r["oldest"]} for r in rows}


# --- the worker's sender loop --------------------------------------------------------------------

async def _listen(wake: asyncio.Event) -> asyncpg.Connection | None:
    try:
        conn = await asyncpg.connect(get_settings().database_url, timeout=10)
        await conn.add_listener(CHANNEL, lambda *_: wake.set())
        return conn
    except Exception as exc:  # polling still sends everything, only later
        log.warning("deliveries: cannot LISTEN (%s); polling every %.1f s", exc, POLL_SECONDS)
        return None


class Sender:
    """The worker's sender loop: sends deliveries as they are added (NOTIFY) and as they come
    due (poll). stop() lets the round in flight finish, so a restart leaves no row leased."""

    def __init__(self, *, clock: Clock = utcnow, poll_seconds: float = POLL_SECONDS) -> None:
        self.clock = clock
        self.poll_seconds = poll_seconds
        self.wake = asyncio.Event()
        self.stopping = False
        self.task: asyncio.Task | None = None

    def start(self) -> "Sender":
        self.task = asyncio.create_task(serve(self), name="deliveries")
        return self

    async def stop(self, grace: float = 15.0) -> None:
        self.stopping = True
        self.wake.set()
        if self.task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(self.task), grace)
        except (TimeoutError, asyncio.CancelledError, Exception):
            self.task.cancel()
            with contextlib.suppress(BaseException):
                await self.task


async def serve(sender: Sender) -> None:
    wake = sender.wake
    conn = await _listen(wake)
    try:
        while not sender.stopping:
            wake.clear()
            try:
                sent = await run_due(sender.clock(), stopping=lambda: sender.stopping)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # PostgreSQL away: try again at the next poll
                log.warning("deliveries: sending failed: %s", exc)
                sent = 0
            if sent:
                continue  # more may have come due while sending
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(sender.poll_seconds):
                    await wake.wait()
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
