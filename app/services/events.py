"""The PAL event log: every state change is a row in PostgreSQL, then a Redis message.

The row is the record; the publish only wakes live subscribers (issue: live status),
so a Redis outage loses no history.
"""

from __future__ import annotations

import contextlib
import json
import logging
from datetime import datetime, timezone
from typing import Any

from app import outages
from app.db import engine
from app.domain.paging import Page, decode_cursor, encode_cursor, page_of, page_size
from app.domain.timefmt import iso_z
from app.keys import pal_events_channel as channel
from app.redis_client import redis
from app.services.rows import first_rows_per_pal
from app.services import webhook_events
from app.tables import Pal, PalEvent

log = logging.getLogger(__name__)


def event_view(row: dict[str, Any], pal_id: str) -> dict[str, Any]:
    payload = row["payload"]
    if isinstance(payload, str):
        payload = json.loads(payload)
    return {
        "id": row["id"],
        "pal_id": pal_id,
        "kind": row["kind"],
        "payload": payload,
        "created_at": iso_z(row["created_at"]),
    }


async def record_event(pal_pk: int, kind: str, payload: dict[str, Any], *, pal_id: str | None = None) -> dict[str, Any]:
    """Store one event and publish it; returns the event as subscribers see it."""
    now = datetime.now(timezone.utc)
    kind = str(kind)
    # The webhook deliveries of the event are stored with it, in one transaction: an event
    # is never recorded without them, nor sent without being recorded (docs/webhooks.md).
    webhook = await webhook_events.prepare(pal_pk, kind)  # reads the PAL's public id too
    if webhook is not None:
        pal_id = pal_id or webhook.pal_id
    sends = webhook is not None and bool(webhook.endpoints)
    async with engine().transaction() if sends else contextlib.nullcontext():
        rows = await PalEvent.insert(PalEvent(pal=pal_pk, kind=kind, payload=payload, created_at=now)).returning(
            PalEvent.id, PalEvent.kind, PalEvent.payload, PalEvent.created_at
        )
        if pal_id is None:
            pal_id = (await Pal.select(Pal.pal_id).where(Pal.id == pal_pk).first())["pal_id"]
        if sends:
            await webhook_events.enqueue_for_event(pal_pk, webhook, payload, now)  # type: ignore[arg-type]
    event = event_view(rows[0], pal_id)
    event["payload"] = payload
    log.info("pal %s: %s %s", pal_id, kind, json.dumps(payload, default=str)[:300])
    try:
        await redis().publish(channel(pal_id), json.dumps(event, default=str))
    except Exception as exc:  # history is safe in PostgreSQL; live push is best effort
        if outages.report(exc) is None:  # during an outage, its own log lines say it once
            log.warning("could not publish %s for pal %s: %s", kind, pal_id, exc)
    return event


async def events_page(pal_pk: int, pal_id: str, *, after: int | None, first: int) -> tuple[list[dict[str, Any]], bool]:
    """Up to `first` events with id > `after`, oldest first, and whether more follow."""
    where = PalEvent.pal == pal_pk
    if after is not None:
        where &= PalEvent.id > after
    rows = await PalEvent.select(PalEvent.id, PalEvent.kind, PalEvent.payload, PalEvent.created_at).where(
        where).order_by(PalEvent.id).limit(first + 1)
    return [event_view(r, pal_id) for r in rows[:first]], len(rows) > first


async def last_event_id(pal_pk: int) -> int | None:
    row = await PalEvent.select(PalEvent.id).where(PalEvent.pal == pal_pk).order_by(
        PalEvent.id, ascending=False).first()
    return row["id"] if row else None


async def events_pages(account_id: int, pal_ids: list[str], *, first: object = None, after: object = None,
                       names: tuple[str, str] = ("first", "after"), newest_first: bool = False) -> dict[str, Page]:
    """A page of the event log for each of the account's PALs, oldest first, or newest first
    (the recent log; its cursors are of their own kind), in one query for all."""
    size = page_size(first, field=names[0])
    kind = "recent-events" if newest_first else "events"
    key = decode_cursor(after, kind, (int,), field=names[1])
    where, args = ("", ()) if key is None else (" AND t.id < {}" if newest_first else " AND t.id > {}", key)
    grouped = await first_rows_per_pal(PalEvent, account_id, pal_ids, select="t.id, t.kind, t.payload, t.created_at",
                                       order="t.id DESC" if newest_first else "t.id", first=size, where=where,
                                       args=args)
    return {pal_id: page_of(rows, size, lambda r: encode_cursor(kind, r["id"])).map(
        lambda r: event_view(r, pal_id)) for pal_id, rows in grouped.items()}
