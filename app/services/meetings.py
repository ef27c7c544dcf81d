"""What a PAL's owner sees of its invitations: one entry per event, with its occurrences."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.config import get_settings
from app.domain.occurrences import Occurrence, UnplannableEvent, expand_occurrences
from app.domain.paging import Page, decode_cursor, encode_cursor, page_of, page_size
from app.domain.timefmt import iso_z
from app.services.joins import stored_event
from app.services.rows import first_rows_per_pal, json_value
from app.tables import CalendarEvent

MAX_OCCURRENCES_SHOWN = 50


def _occurrences(row: dict[str, Any], now: datetime) -> list[Occurrence]:
    if row["cancelled"] or not row["ics"]:
        return []
    try:
        return expand_occurrences(stored_event(row), now - timedelta(days=1), now + get_settings().planning_horizon)
    except UnplannableEvent:
        return []  # the listing still shows the event; the reconciler logs why it has no joins


def meeting_view(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    occurrences = [{
        "recurrence_id": occ.recurrence_id, "start_at": iso_z(occ.start), "end_at": iso_z(occ.end),
        "meeting_url": occ.link.url if occ.link else None,
        "platform": occ.link.platform if occ.link else None,
    } for occ in _occurrences(row, now)[:MAX_OCCURRENCES_SHOWN]]
    return {
        "event_id": row["id"],
        "uid": row["uid"],
        "summary": row["summary"],
        "organizer": row["organizer"],
        "meeting_url": row["meeting_url"],
        "platform": row["platform"],
        "decision": row["decision"],
        "reason": row["reason"],
        "authenticated": row["authenticated"],
        "sequence": row["sequence"],
        "cancelled": row["cancelled"],
        "cancelled_instances": json_value(row["cancelled_instances"], []),
        "timezone_problems": json_value(row["timezone_problems"], []),
        "unplanned": json_value(row["unplanned"], []),
        "occurrences": occurrences,
        "created_at": iso_z(row["created_at"]),
        "updated_at": iso_z(row["updated_at"]),
    }


async def meetings_for_pal(pal_pk: int, now: datetime, *, limit: int = 200) -> list[dict[str, Any]]:
    """A PAL's invitations by its internal key, newest received first (for internal callers and tests)."""
    rows = await CalendarEvent.select().where(CalendarEvent.pal == pal_pk).order_by(
        CalendarEvent.id, ascending=False).limit(limit)
    return [meeting_view(r, now) for r in rows]


async def meetings_pages(account_id: int, pal_ids: list[str], now: datetime, *, first: object = None,
                         after: object = None, names: tuple[str, str] = ("first", "after")) -> dict[str, Page]:
    """A page of invitations for each of the account's PALs, newest received first (one query)."""
    size = page_size(first, field=names[0])
    key = decode_cursor(after, "meetings", (int,), field=names[1])
    where, args = ("", ()) if key is None else (" AND t.id < {}", key)
    grouped = await first_rows_per_pal(CalendarEvent, account_id, pal_ids, select="t.*", order="t.id DESC",
                                       first=size, where=where, args=args)
    return {pal_id: page_of(rows, size, lambda r: encode_cursor("meetings", r["id"])).map(
        lambda r: meeting_view(r, now)) for pal_id, rows in grouped.items()}


async def count_meetings(pal_pk: int) -> int:
    return await CalendarEvent.count().where(CalendarEvent.pal == pal_pk)
