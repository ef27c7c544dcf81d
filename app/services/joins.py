"""Join planning and join state: turns stored events into Join rows and queue jobs.

PostgreSQL holds the plan. Each planned join has a `plan_version`; its arq job id
carries that version, so a re-plan simply enqueues a new job and the old one,
when it fires, sees a different version and does nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app.config import get_settings
from app.domain.calendar_state import StoredEvent
from app.domain.errors import NotFound
from app.domain.ids import is_serial_id
from app.domain.join_planning import ExistingJoin, PlannedJoin, diff_joins, overlaps, plan_joins
from app.domain.occurrences import UnplannableEvent, expand_occurrences
from app.domain.timefmt import iso_z
from app.queue import enqueue, join_job_id
from app.services.events import record_event
from app.services.rows import json_value
from app.tables import CalendarEvent, Join, JoinStatusChange

log = logging.getLogger(__name__)

ACTIVE = ("dispatching", "joining", "waiting_room", "in_call")
TERMINAL = ("left", "failed", "cancelled")
# Redis only needs to carry joins that are due soon; the reconciler enqueues the rest
# as their time approaches, which keeps both the tick and Redis memory small.
ENQUEUE_WINDOW = timedelta(minutes=15)
REPLANS_PER_TICK = 2000
REPLAN_SLACK = timedelta(days=1)
STATUSES = ("scheduled", *ACTIVE, *TERMINAL)


def stored_event(row: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        uid=row["uid"],
        organizer=row["organizer"],
        sequence=row["sequence"],
        dtstamp=row["dtstamp"],
        ics=row["ics"],
        cancelled=row["cancelled"],
        cancelled_instances=frozenset(json_value(row["cancelled_instances"], [])),
    )


def join_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "recurrence_id": row["recurrence_id"] or None,
        "meeting_url": row["meeting_url"],
        "start_at": iso_z(row["start_at"]),
        "end_at": iso_z(row["end_at"]),
        "join_at": iso_z(row["join_at"]),
        "status": row["status"],
        "reason": row["reason"],
        "plan_version": row["plan_version"],
        "updated_at": iso_z(row["updated_at"]),
    }


async def set_status(join_pk: int, status: str, reason: str | None = None, *, now: datetime,
                     only_from: tuple[str, ...] | None = None, version: int | None = None,
                     bump_version: bool = False, extra: dict[Any, Any] | None = None) -> dict[str, Any] | None:
    """Move a join to `status` (only from given statuses / plan version), log it, emit an event.

    Returns the updated row, or None when the conditions did not hold (someone else won).
    """
    assert status in STATUSES, status
    where = Join.id == join_pk
    if only_from:
        where &= Join.status.is_in(list(only_from))
    if version is not None:
        where &= Join.plan_version == version
    values: dict[Any, Any] = {Join.status: status, Join.reason: reason, Join.updated_at: now}
    if bump_version:
        values[Join.plan_version] = Join.plan_version + 1
    values.update(extra or {})
    rows = await Join.update(values).where(where).returning(*Join.all_columns())
    if not rows:
        return None
    row = rows[0]
    await JoinStatusChange.insert(JoinStatusChange(join=join_pk, status=status, reason=reason, at=now))
    await record_event(row["pal"], status if status != "cancelled" else "join_cancelled",
                       {"join_id": join_pk, "status": status, "reason": reason,
                        "meeting_url": row["meeting_url"], "start_at": iso_z(row["start_at"])})
    return row


async def schedule_job(row: dict[str, Any], now: datetime) -> None:
    """Hand a scheduled join to the queue if it is due soon (else the reconciler will)."""
    if row["join_at"] > now + ENQUEUE_WINDOW:
        return  # the reconciler enqueues it when it comes due
    await enqueue("run_join", row["id"], row["plan_version"],
                  job_id=join_job_id(row["id"], row["plan_version"]), at=row["join_at"])


async def _is_duplicate(pal_pk: int, event_pk: int | None, plan: PlannedJoin) -> bool:
    """One bot per (PAL, meeting URL, overlapping time), whichever event planned it first."""
    others = await Join.select(Join.id, Join.start_at, Join.end_at, Join.calendar_event).where(
        (Join.pal == pal_pk) & (Join.meeting_url == plan.meeting_url)
        & Join.status.is_in(["scheduled", *ACTIVE])
    )
    for other in others:
        if event_pk is not None and other["calendar_event"] == event_pk:
            continue
        end = other["end_at"] or other["start_at"] + timedelta(hours=4)
        if overlaps(other["start_at"], end, plan.start, plan.end):
            return True
    return False


async def _create(pal_pk: int, event_pk: int, plan: PlannedJoin, now: datetime) -> None:
    if await _is_duplicate(pal_pk, event_pk, plan):
        log.info("pal %s: %s at %s already has a bot; not planning a second", pal_pk, plan.meeting_url, plan.start)
        return
    try:
        rows = await Join.insert(Join(
            pal=pal_pk, calendar_event=event_pk, recurrence_id=plan.recurrence_id, meeting_url=plan.meeting_url,
            start_at=plan.start, end_at=plan.end, join_at=plan.join_at, status="scheduled", plan_version=1,
            created_at=now, updated_at=now,
        )).returning(*Join.all_columns())
    except asyncpg.UniqueViolationError:
        return  # a concurrent re-plan already scheduled this occurrence
    row = rows[0]
    await JoinStatusChange.insert(JoinStatusChange(join=row["id"], status="scheduled", at=now))
    await record_event(pal_pk, "join_scheduled", {
        "join_id": row["id"], "join_at": iso_z(row["join_at"]), "start_at": iso_z(row["start_at"]),
        "meeting_url": row["meeting_url"], "recurrence_id": row["recurrence_id"]})
    await schedule_job(row, now)


async def _move(old: ExistingJoin, plan: PlannedJoin, now: datetime) -> None:
    rows = await Join.update({
        Join.meeting_url: plan.meeting_url, Join.start_at: plan.start, Join.end_at: plan.end,
        Join.join_at: plan.join_at, Join.plan_version: Join.plan_version + 1, Join.updated_at: now,
    }).where((Join.id == old.id) & (Join.status == "scheduled")).returning(*Join.all_columns())
    if not rows:
        return
    row = rows[0]
    await record_event(row["pal"], "join_rescheduled", {
        "join_id": row["id"], "join_at": iso_z(row["join_at"]), "start_at": iso_z(row["start_at"]),
        "meeting_url": row["meeting_url"], "previous_start_at": iso_z(old.start)})
    await schedule_job(row, now)


async def _cancel(old: ExistingJoin, reason: str, now: datetime) -> None:
    if old.status == "scheduled":
        await set_status(old.id, "cancelled", reason, now=now, only_from=("scheduled",), bump_version=True)
    elif old.status in ACTIVE:
        # A running bot polls this flag and leaves the call.
        await Join.update({Join.stop_requested: True, Join.updated_at: now}).where(Join.id == old.id)


def _existing(row: dict[str, Any]) -> ExistingJoin:
    return ExistingJoin(id=row["id"], recurrence_id=row["recurrence_id"], join_at=row["join_at"],
                        meeting_url=row["meeting_url"], start=row["start_at"],
                        end=row["end_at"] or row["start_at"], status=row["status"])


async def replan_event(event_pk: int, now: datetime) -> dict[str, int]:
    """Bring the joins of one stored event in line with its current calendar data."""
    settings = get_settings()
    event = await CalendarEvent.select().where(CalendarEvent.id == event_pk).first()
    if event is None:
        return {}
    window_end = now + settings.planning_horizon
    desired: list[PlannedJoin] = []
    reason = "event cancelled"
    if event["decision"] == "accepted" and not event["cancelled"]:
        try:
            occurrences = expand_occurrences(stored_event(event), now, window_end)
        except UnplannableEvent as exc:
            # Keep whatever joins it has; retry when the horizon next moves (daily).
            log.warning("pal %s: event %s left as planned: %s", event["pal"], event_pk, exc)
            await CalendarEvent.update({CalendarEvent.planned_until: window_end}).where(
                CalendarEvent.id == event_pk)
            return {"unplannable": 1}
        desired = plan_joins(occurrences, now=now, lead=settings.join_lead)
    elif event["decision"] != "cancelled":
        reason = f"invite {event['decision']}"
    rows = await Join.select().where(Join.calendar_event == event_pk)
    changes = diff_joins([_existing(r) for r in rows], desired, window_end=window_end, now=now)
    for plan in changes.create:
        await _create(event["pal"], event_pk, plan, now)
    for old, plan in changes.move:
        await _move(old, plan, now)
    for old in changes.cancel:
        await _cancel(old, reason, now)
    await CalendarEvent.update({CalendarEvent.planned_until: window_end}).where(CalendarEvent.id == event_pk)
    return {"created": len(changes.create), "moved": len(changes.move), "cancelled": len(changes.cancel)}


async def get_join(account_id: int, join_pk: int) -> dict[str, Any]:
    """One join with its status history, if the account owns its PAL (404 otherwise)."""
    if not is_serial_id(join_pk):
        raise NotFound(f"Join {join_pk} not found.", field="join_id")
    row = await Join.select(*Join.all_columns(), Join.pal.pal_id.as_alias("pal_id")).where(
        (Join.id == join_pk) & (Join.pal.account == account_id)).first()
    if row is None:
        raise NotFound(f"Join {join_pk} not found.", field="join_id")
    history = await JoinStatusChange.select().where(JoinStatusChange.join == join_pk).order_by(JoinStatusChange.id)
    return {**join_view(row), "pal_id": row["pal_id"],
            "history": [{"status": h["status"], "reason": h["reason"], "at": iso_z(h["at"])} for h in history]}


async def joins_for_pal(pal_pk: int, *, limit: int = 200) -> list[dict[str, Any]]:
    rows = await Join.select().where(Join.pal == pal_pk).order_by(Join.join_at, ascending=False).limit(limit)
    return [join_view(r) for r in rows]


async def reconcile(now: datetime) -> dict[str, int]:
    """The cron: extend every accepted event's horizon and re-enqueue every scheduled join.

    Enqueueing is idempotent (arq refuses a job id that is already queued), so this
    restores whatever Redis lost without ever doubling a join.
    """
    settings = get_settings()
    # A series gains at most about one occurrence a day at the horizon's edge, so
    # re-planning daily (not hourly) keeps joins planned >= horizon - 1 day ahead
    # at a 24th of the cost (bench/planning_bench.py).
    stale_before = now + settings.planning_horizon - REPLAN_SLACK
    extended = 0
    # Bounded per tick so one tick stays short; the rest wait for the next minute.
    events = await CalendarEvent.select(CalendarEvent.id).where(
        (CalendarEvent.decision == "accepted") & (CalendarEvent.cancelled == False)  # noqa: E712
        & ((CalendarEvent.planned_until.is_null()) | (CalendarEvent.planned_until < stale_before))
    ).order_by(CalendarEvent.planned_until).limit(REPLANS_PER_TICK)
    for event in events:
        try:
            await replan_event(event["id"], now)
        except Exception:  # one bad event must not stop planning for every other PAL
            log.exception("reconcile: re-planning event %s failed", event["id"])
            continue
        extended += 1
    requeued = 0
    due = await Join.select(Join.id, Join.plan_version, Join.join_at).where(
        (Join.status == "scheduled") & (Join.join_at <= now + ENQUEUE_WINDOW)
    )
    for row in due:
        if await enqueue("run_join", row["id"], row["plan_version"],
                         job_id=join_job_id(row["id"], row["plan_version"]), at=row["join_at"]):
            requeued += 1
    return {"events_replanned": extended, "jobs_enqueued": requeued}
