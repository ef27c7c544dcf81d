"""The join's one owner: creation, status changes, stop requests, scheduling and re-planning.

Every part of the service that changes a join comes through here: calendar
planning (replan_event, reconcile), API conversations, the workers' bot runs
(app/services/bot_runs.py) and nothing else writes the joins table. Statuses,
reasons and event kinds come from app/domain/join_state.py.

PostgreSQL holds the plan. Each planned join has a `plan_version`; its arq job id
carries that version, so a re-plan simply enqueues a new job and the old one,
when it fires, sees a different version and does nothing.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from app import metrics
from app.config import get_settings
from app.domain.calendar_state import StoredEvent
from app.domain.errors import NotFound
from app.domain.ids import is_serial_id
from app.domain.join_planning import (
    ExistingJoin, NotPlanned, PlannedJoin, cap_per_day, diff_joins, overlaps, plan_joins, unplanned_reasons,
)
from app.domain.join_state import (
    ACTIVE, LIVE, CancelReason, EventKind, FailReason, JoinStatus, NotPlannedReason, event_kind_for,
)
from app.domain.occurrences import UnplannableEvent, expand_occurrences
from app.domain.paging import Page, decode_cursor, encode_cursor, page_of, page_size
from app.domain.timefmt import iso_z
from app.keys import JOB_RUN_JOIN, join_job_id
from app.queue import enqueue
from app.services.events import last_event_id, record_event
from app.services.rows import first_rows_per_pal, json_value
from app.tables import CalendarEvent, Join, JoinStatusChange

log = logging.getLogger(__name__)

# Kept as names for callers that filter rows by status.
ACTIVE_STATUSES = tuple(sorted(ACTIVE))
LIVE_STATUSES = tuple(sorted(LIVE))
# Redis only needs to carry joins that are due soon; the reconciler enqueues the rest
# as their time approaches, which keeps both the tick and Redis memory small.
ENQUEUE_WINDOW = timedelta(minutes=15)
REPLANS_PER_TICK = 2000
REPLAN_SLACK = timedelta(days=1)
DUE_PER_TICK = 5000
# A conversation has no end time: its "occurrence" is taken to last this long for dedupe.
OPEN_ENDED = timedelta(hours=4)
# How many unplanned occurrences an event keeps for its meeting view (the count is exact).
UNPLANNED_SHOWN = 50


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


def _select_joins():
    """Join rows with the event they belong to (NULL for API conversations)."""
    return Join.select(*Join.all_columns(), Join.calendar_event.uid.as_alias("event_uid"),
                       Join.calendar_event.summary.as_alias("event_summary"),
                       Join.conversation.conversation_id.as_alias("conversation_public_id"))


def join_view(row: dict[str, Any]) -> dict[str, Any]:
    event_pk = row.get("calendar_event")
    return {
        "id": row["id"],
        "event_id": event_pk,
        "uid": row.get("event_uid") if event_pk else None,
        "summary": row.get("event_summary") if event_pk else None,
        "recurrence_id": row["recurrence_id"] or None,
        # The conversation of its bot run (media bridge): an API conversation's, or the one
        # a calendar join gets when it is dispatched; None before that.
        "conversation_id": row.get("conversation_public_id") if row.get("conversation") else None,
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
                     only_from: tuple[str, ...] | frozenset[str] | None = None, version: int | None = None,
                     bump_version: bool = False, extra: dict[Any, Any] | None = None) -> dict[str, Any] | None:
    """Move a join to `status` (only from given statuses / plan version), log it, emit an event.

    Returns the updated row, or None when the conditions did not hold (someone else won).
    """
    status = JoinStatus(status)
    where = Join.id == join_pk
    if only_from:
        where &= Join.status.is_in([str(s) for s in only_from])
    if version is not None:
        where &= Join.plan_version == version
    values: dict[Any, Any] = {Join.status: str(status), Join.reason: reason, Join.updated_at: now}
    if bump_version:
        values[Join.plan_version] = Join.plan_version + 1
    values.update(extra or {})
    rows = await Join.update(values).where(where).returning(*Join.all_columns())
    if not rows:
        return None
    row = rows[0]
    metrics.count_join(status, reason)
    await JoinStatusChange.insert(JoinStatusChange(join=join_pk, status=str(status), reason=reason, at=now))
    await record_event(row["pal"], event_kind_for(status),
                       {"join_id": join_pk, "status": str(status), "reason": reason,
                        "meeting_url": row["meeting_url"], "start_at": iso_z(row["start_at"])})
    return row


async def schedule_job(row: dict[str, Any], now: datetime) -> bool:
    """Hand a scheduled join to the queue if it is due soon (else the reconciler will).

    A join whose meeting is already over ends as failed/missed instead: a worker
    fleet that was down, or a reconciler catching up, must not send a bot into a
    finished meeting nor retry it forever. A late join of a running meeting is
    queued to run at once. Returns True when a job was queued.
    """
    if row["end_at"] is not None and row["end_at"] <= now:
        missed = await set_status(row["id"], JoinStatus.FAILED, FailReason.MISSED, now=now,
                                  only_from=(JoinStatus.SCHEDULED,), version=row["plan_version"])
        if missed:
            log.warning("join %s missed: its meeting ended at %s before a bot was sent",
                        row["id"], iso_z(row["end_at"]))
        return False
    if row["join_at"] > now + ENQUEUE_WINDOW:
        return False  # the reconciler enqueues it when it comes due
    return await enqueue(JOB_RUN_JOIN, row["id"], row["plan_version"],
                         job_id=join_job_id(row["id"], row["plan_version"]), at=row["join_at"])


async def plan_refusal(pal_pk: int, plan: PlannedJoin, event_pk: int) -> str | None:
    """Why this calendar join may not be created (a NotPlannedReason), or None.

    One bot per PAL per time slot: the same meeting planned by another event or a
    conversation is a duplicate; another calendar meeting at an overlapping time is an
    overlap (first planned wins). And a PAL holds at most MAX_PLANNED_JOINS_PER_PAL."""
    others = await Join.select(Join.meeting_url, Join.start_at, Join.end_at, Join.calendar_event).where(
        (Join.pal == pal_pk) & Join.status.is_in(list(LIVE_STATUSES))
        & (Join.start_at < plan.end))
    for other in others:
        if other["calendar_event"] == event_pk:
            continue
        other_end = other["end_at"] or other["start_at"] + OPEN_ENDED
        if not overlaps(other["start_at"], other_end, plan.start, plan.end):
            continue
        if other["meeting_url"] == plan.meeting_url:
            return NotPlannedReason.DUPLICATE
        if other["calendar_event"] is not None:
            return NotPlannedReason.OVERLAP
    held = await Join.count().where((Join.pal == pal_pk) & (Join.status == str(JoinStatus.SCHEDULED)))
    if held >= get_settings().max_planned_joins_per_pal:
        return NotPlannedReason.PAL_JOIN_CAP
    return None


async def joining_now(pal_pk: int, meeting_url: str, now: datetime) -> int | None:
    """A live join taking this PAL into this meeting now (or overdue), if any."""
    row = await Join.select(Join.id).where(
        (Join.pal == pal_pk) & (Join.meeting_url == meeting_url) & Join.status.is_in(list(LIVE_STATUSES))
        & (Join.join_at <= now)).first()
    return row["id"] if row else None


async def create_join(pal_pk: int, plan: PlannedJoin, now: datetime, *, event_pk: int | None = None,
                      conversation_pk: int | None = None, pal_id: str | None = None,
                      payload: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """Store a scheduled join, log and announce it, and queue it if due soon.

    None when a concurrent re-plan won the partial unique index. Callers check first:
    the planner with plan_refusal(), a conversation with joining_now()."""
    try:
        rows = await Join.insert(Join(
            pal=pal_pk, calendar_event=event_pk, conversation=conversation_pk, recurrence_id=plan.recurrence_id,
            meeting_url=plan.meeting_url, start_at=plan.start, end_at=plan.end if event_pk else None,
            join_at=plan.join_at, status=str(JoinStatus.SCHEDULED), plan_version=1, created_at=now, updated_at=now,
        )).returning(*Join.all_columns())
    except asyncpg.UniqueViolationError:
        return None  # a concurrent re-plan already scheduled this occurrence
    row = rows[0]
    metrics.count_join(JoinStatus.SCHEDULED, None)
    await JoinStatusChange.insert(JoinStatusChange(join=row["id"], status=str(JoinStatus.SCHEDULED), at=now))
    await record_event(pal_pk, EventKind.JOIN_SCHEDULED, {
        "join_id": row["id"], "join_at": iso_z(row["join_at"]), "start_at": iso_z(row["start_at"]),
        "meeting_url": row["meeting_url"], "recurrence_id": row["recurrence_id"], **(payload or {})},
        pal_id=pal_id)
    await schedule_job(row, now)
    return row


async def _move(old: ExistingJoin, plan: PlannedJoin, now: datetime) -> None:
    rows = await Join.update({
        Join.meeting_url: plan.meeting_url, Join.start_at: plan.start, Join.end_at: plan.end,
        Join.join_at: plan.join_at, Join.plan_version: Join.plan_version + 1, Join.updated_at: now,
    }).where((Join.id == old.id) & (Join.status == str(JoinStatus.SCHEDULED))).returning(*Join.all_columns())
    if not rows:
        return
    row = rows[0]
    await record_event(row["pal"], EventKind.JOIN_RESCHEDULED, {
        "join_id": row["id"], "join_at": iso_z(row["join_at"]), "start_at": iso_z(row["start_at"]),
        "meeting_url": row["meeting_url"], "previous_start_at": iso_z(old.start)})
    await schedule_job(row, now)


async def request_stop(join_pk: int, reason: str, now: datetime) -> bool:
    """Ask the running bot of a join to leave; it polls the flag (bot_runs.stop_requested)."""
    rows = await Join.update({Join.stop_requested: True, Join.updated_at: now}).where(
        (Join.id == join_pk) & Join.status.is_in(list(ACTIVE_STATUSES))
        & (Join.stop_requested == False)  # noqa: E712
    ).returning(Join.pal, Join.meeting_url)
    if rows:
        await record_event(rows[0]["pal"], EventKind.JOIN_STOP_REQUESTED,
                           {"join_id": join_pk, "reason": reason, "meeting_url": rows[0]["meeting_url"]})
    return bool(rows)


async def cancel_join(join_pk: int, status: str, reason: str, now: datetime) -> dict[str, Any] | None:
    """Unplan a join: a scheduled one is cancelled, a running bot is asked to leave."""
    if status == JoinStatus.SCHEDULED:
        return await set_status(join_pk, JoinStatus.CANCELLED, reason, now=now,
                                only_from=(JoinStatus.SCHEDULED,), bump_version=True)
    if status in ACTIVE:
        await request_stop(join_pk, reason, now)
    return None


def _existing(row: dict[str, Any]) -> ExistingJoin:
    return ExistingJoin(id=row["id"], recurrence_id=row["recurrence_id"], join_at=row["join_at"],
                        meeting_url=row["meeting_url"], start=row["start_at"],
                        end=row["end_at"] or row["start_at"], status=row["status"], reason=row["reason"])


def _absent_reason(event: dict[str, Any]) -> CancelReason:
    """Why joins of an event that plans nothing (or lost an occurrence) are cancelled."""
    if event["decision"] == "cancelled":
        stored = event["reason"] or ""
        return CancelReason(stored) if stored in CancelReason._value2member_map_ else CancelReason.EVENT_CANCELLED
    if event["decision"] != "accepted":
        return CancelReason.DECLINED
    return CancelReason.OCCURRENCE_CANCELLED


async def replan_event(event_pk: int, now: datetime) -> dict[str, int]:
    """Bring the joins of one stored event in line with its current calendar data."""
    settings = get_settings()
    event = await CalendarEvent.select().where(CalendarEvent.id == event_pk).first()
    if event is None:
        return {}
    window_end = now + settings.planning_horizon
    desired: list[PlannedJoin] = []
    not_planned: list[NotPlanned] = []
    unplanned: dict[str, str] = {}
    if event["decision"] == "accepted" and not event["cancelled"]:
        try:
            occurrences = expand_occurrences(stored_event(event), now, window_end)
        except UnplannableEvent as exc:
            # Keep whatever joins it has; retry when the horizon next moves (daily).
            log.warning("pal %s: event %s left as planned: %s", event["pal"], event_pk, exc)
            await CalendarEvent.update({CalendarEvent.planned_until: window_end}).where(
                CalendarEvent.id == event_pk)
            return {"unplannable": 1}
        desired, not_planned = cap_per_day(plan_joins(occurrences, now=now, lead=settings.join_lead),
                                           settings.max_joins_per_series_per_day)
        unplanned = {**unplanned_reasons(occurrences, now=now),
                     **{n.recurrence_id: n.reason for n in not_planned}}
    rows = await Join.select().where(Join.calendar_event == event_pk)
    changes = diff_joins([_existing(r) for r in rows], desired, window_end=window_end, now=now,
                         absent_reason=_absent_reason(event), unplanned=unplanned)
    created = 0
    for plan in changes.create:
        refusal = await plan_refusal(event["pal"], plan, event_pk)
        if refusal:
            not_planned.append(NotPlanned(plan.recurrence_id, plan.start, refusal))
        elif await create_join(event["pal"], plan, now, event_pk=event_pk):
            created += 1
    for old, plan in changes.move:
        await _move(old, plan, now)
    for old in changes.cancel:
        await cancel_join(old.id, old.status, changes.reasons[old.id], now)
    for old in changes.missed:
        await set_status(old.id, JoinStatus.FAILED, FailReason.MISSED, now=now, only_from=(JoinStatus.SCHEDULED,))
    await _record_unplanned(event, not_planned)
    await CalendarEvent.update({CalendarEvent.planned_until: window_end}).where(CalendarEvent.id == event_pk)
    return {"created": created, "moved": len(changes.move), "cancelled": len(changes.cancel),
            "missed": len(changes.missed), "not_planned": len(not_planned)}


async def _record_unplanned(event: dict[str, Any], not_planned: list[NotPlanned]) -> None:
    """Keep the event's unplanned occurrences for its meeting view; say so once when they change."""
    shown = [{"recurrence_id": n.recurrence_id or None, "start_at": iso_z(n.start), "reason": str(n.reason)}
             for n in sorted(not_planned, key=lambda n: (n.start, n.recurrence_id))[:UNPLANNED_SHOWN]]
    if shown == json_value(event["unplanned"], []):
        return
    await CalendarEvent.update({CalendarEvent.unplanned: shown}).where(CalendarEvent.id == event["id"])
    if not not_planned:
        return
    counts: dict[str, int] = {}
    for n in not_planned:
        counts[str(n.reason)] = counts.get(str(n.reason), 0) + 1
    log.warning("pal %s: event %s (%s): %d occurrence(s) get no join: %s", event["pal"], event["id"],
                event["uid"][:100], len(not_planned), counts)
    await record_event(event["pal"], EventKind.JOINS_NOT_PLANNED, {
        "event_id": event["id"], "uid": event["uid"], "summary": event["summary"], "count": len(not_planned),
        "reasons": counts, "first_start_at": shown[0]["start_at"]})


async def get_join(account_id: int, join_pk: int) -> dict[str, Any]:
    """One join with its status history, if the account owns its PAL (404 otherwise)."""
    if not is_serial_id(join_pk):
        raise NotFound(f"Join {join_pk} not found.", field="join_id")
    row = await _select_joins().columns(Join.pal.pal_id.as_alias("pal_id")).where(
        (Join.id == join_pk) & (Join.pal.account == account_id)).first()
    if row is None:
        raise NotFound(f"Join {join_pk} not found.", field="join_id")
    return {**join_view(row), "pal_id": row["pal_id"], "history": (await histories([join_pk]))[join_pk]}


async def histories(join_pks: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Every status each join passed through, oldest first, for many joins in one query.
    The caller has checked that the joins are the account's (they come from its own lists)."""
    found: dict[int, list[dict[str, Any]]] = {pk: [] for pk in join_pks}
    if not join_pks:
        return found
    rows = await JoinStatusChange.select().where(JoinStatusChange.join.is_in(list(join_pks))).order_by(
        JoinStatusChange.id)
    for h in rows:
        found[h["join"]].append({"status": h["status"], "reason": h["reason"], "at": iso_z(h["at"])})
    return found


# The two orders a PAL's joins are listed in: newest first (all), soonest first (upcoming only).
_JOIN_ORDERS = {False: ("joins", "t.join_at DESC, t.id DESC", "<"), True: ("upcoming_joins", "t.join_at, t.id", ">")}


async def joins_pages(account_id: int, pal_ids: list[str], *, first: object = None, after: object = None,
                      upcoming: bool = False, names: tuple[str, str] = ("first", "after")) -> dict[str, Page]:
    """A page of joins for each of the account's PALs (one query for all of them).

    Newest first by join time; with `upcoming`, only scheduled joins, soonest first.
    `names` are the caller's words for page size and cursor (REST: limit, cursor)."""
    kind, order, compare = _JOIN_ORDERS[bool(upcoming)]
    size = page_size(first, field=names[0])
    key = decode_cursor(after, kind, (datetime, int), field=names[1])
    where, args = "", ()
    if upcoming:
        where += f" AND t.status = '{JoinStatus.SCHEDULED}'"
    if key is not None:
        where += f" AND (t.join_at, t.id) {compare} ({{}}::timestamptz, {{}}::integer)"
        args = key
    grouped = await first_rows_per_pal(
        Join, account_id, pal_ids, select="t.*, e.uid AS event_uid, e.summary AS event_summary, "
        "c.conversation_id AS conversation_public_id", order=order, first=size, where=where, args=args,
        joins="LEFT JOIN calendar_events e ON e.id = t.calendar_event "
              "LEFT JOIN conversations c ON c.id = t.conversation")
    return {pal_id: page_of(rows, size, lambda r: encode_cursor(kind, r["join_at"], r["id"])).map(join_view)
            for pal_id, rows in grouped.items()}


async def count_joins(pal_pk: int, *, upcoming: bool = False) -> int:
    where = Join.pal == pal_pk
    if upcoming:
        where &= Join.status == str(JoinStatus.SCHEDULED)
    return await Join.count().where(where)


async def conversation_join(conversation_pk: int) -> dict[str, Any] | None:
    return await Join.select().where(Join.conversation == conversation_pk).first()


async def current_state(pal_pk: int, *, limit: int = 50) -> dict[str, Any]:
    """What a late subscriber needs before streaming: upcoming and live joins, and the log position."""
    position = await last_event_id(pal_pk)
    upcoming = await _select_joins().where(
        (Join.pal == pal_pk) & (Join.status == str(JoinStatus.SCHEDULED))).order_by(Join.join_at).limit(limit)
    live = await _select_joins().where(
        (Join.pal == pal_pk) & Join.status.is_in(list(ACTIVE_STATUSES))).order_by(Join.join_at).limit(limit)
    return {"last_event_id": position, "upcoming": [join_view(r) for r in upcoming],
            "live": [join_view(r) for r in live]}


async def reconcile(now: datetime) -> dict[str, int]:
    """The cron: extend every accepted event's horizon and re-enqueue every due scheduled join.

    Enqueueing is idempotent (arq refuses a job id that is already queued), so this
    restores whatever Redis lost without ever doubling a join. A due join whose
    meeting is over ends as missed rather than being retried forever.
    """
    settings = get_settings()
    # A series gains at most about one occurrence a day at the horizon's edge, so
    # re-planning daily (not hourly) keeps joins planned >= horizon - 1 day ahead
    # at a 24th of the cost (bench/planning_bench.py).
    stale_before = now + settings.planning_horizon - REPLAN_SLACK
    extended = missed = 0
    # Bounded per tick so one tick stays short; the rest wait for the next minute.
    events = await CalendarEvent.select(CalendarEvent.id).where(
        (CalendarEvent.decision == "accepted") & (CalendarEvent.cancelled == False)  # noqa: E712
        & ((CalendarEvent.planned_until.is_null()) | (CalendarEvent.planned_until < stale_before))
    ).order_by(CalendarEvent.planned_until).limit(REPLANS_PER_TICK)
    for event in events:
        try:
            missed += (await replan_event(event["id"], now)).get("missed", 0)
        except Exception:  # one bad event must not stop planning for every other PAL
            log.exception("reconcile: re-planning event %s failed", event["id"])
            continue
        extended += 1
    requeued = 0
    due = await Join.select(Join.id, Join.plan_version, Join.join_at, Join.end_at).where(
        (Join.status == str(JoinStatus.SCHEDULED)) & (Join.join_at <= now + ENQUEUE_WINDOW)
    ).order_by(Join.join_at).limit(DUE_PER_TICK)
    for row in due:
        if row["end_at"] is not None and row["end_at"] <= now:
            missed += 1
        if await schedule_job(row, now):
            requeued += 1
    return {"events_replanned": extended, "jobs_enqueued": requeued, "joins_missed": missed}
