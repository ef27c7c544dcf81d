"""Plan bot joins for occurrences and diff them against the stored join plan.

Pure, no I/O. A join starts `lead` (60 s) before the meeting, or at once if
the meeting is already running; only Google Meet links are joined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable, Sequence
from urllib.parse import urlsplit, urlunsplit

from app.domain.join_state import (
    ACTIVE, LIVE, CancelReason, JoinStatus, NotPlannedReason, went_to_meeting,
)
from app.domain.platforms import is_joinable
from app.domain.occurrences import Occurrence

DEFAULT_LEAD = timedelta(seconds=60)
# Shown as the meeting's reason: an all-day event is accepted but has no time to join at.
ALL_DAY = "all_day"
SCHEDULED = JoinStatus.SCHEDULED
# A bot is (about to be) in the meeting: never moved, only stopped.
ACTIVE_STATUSES = ACTIVE
LIVE_STATUSES = LIVE  # anything else is terminal


@dataclass(frozen=True)
class PlannedJoin:
    """When and where the bot should join one occurrence."""

    recurrence_id: str
    join_at: datetime
    start: datetime
    end: datetime
    meeting_url: str


@dataclass(frozen=True)
class ExistingJoin:
    """A join already stored for an occurrence of the same event."""

    id: int
    recurrence_id: str
    join_at: datetime
    meeting_url: str
    start: datetime
    end: datetime
    status: str
    reason: str | None = None


@dataclass
class JoinChanges:
    """What the service must do to make the stored plan match the desired one."""

    create: list[PlannedJoin] = field(default_factory=list)
    move: list[tuple[ExistingJoin, PlannedJoin]] = field(default_factory=list)
    cancel: list[ExistingJoin] = field(default_factory=list)  # stop too, if active
    unchanged: list[ExistingJoin] = field(default_factory=list)
    missed: list[ExistingJoin] = field(default_factory=list)  # scheduled, never sent, meeting over
    reasons: dict[int, str] = field(default_factory=dict)  # join id -> why it is cancelled

    def _cancel(self, e: ExistingJoin, reason: str) -> None:
        self.cancel.append(e)
        self.reasons[e.id] = reason


def plan_joins(
    occurrences: Iterable[Occurrence], *, now: datetime, lead: timedelta = DEFAULT_LEAD
) -> list[PlannedJoin]:
    """One join per occurrence on a joinable platform (Google Meet) that has not ended and
    has a time (not all-day), sorted by join_at."""
    plans: list[PlannedJoin] = []
    for occ in occurrences:
        if occ.link is None or not is_joinable(occ.link.platform) or occ.end <= now or occ.all_day:
            continue
        join_at = occ.start - lead
        if join_at <= now:  # in progress (or about to start): join at once
            join_at = now
        plans.append(PlannedJoin(occ.recurrence_id, join_at, occ.start, occ.end, occ.link.url))
    plans.sort(key=lambda p: (p.join_at, p.recurrence_id))
    return plans


def unplanned_reasons(occurrences: Iterable[Occurrence], *, now: datetime) -> dict[str, CancelReason]:
    """Why occurrences that still exist (and have not ended) get no join: for live joins on them."""
    reasons: dict[str, CancelReason] = {}
    for occ in occurrences:
        if occ.end <= now:
            continue
        if occ.link is None or not is_joinable(occ.link.platform):
            reasons[occ.recurrence_id] = CancelReason.LINK_CHANGED
        elif occ.all_day:
            reasons[occ.recurrence_id] = CancelReason.RESCHEDULED  # moved to an all-day slot
    return reasons


@dataclass(frozen=True)
class NotPlanned:
    """An occurrence that could be joined but gets no join, and why."""

    recurrence_id: str
    start: datetime
    reason: str


def cap_per_day(plans: Sequence[PlannedJoin], per_day: int) -> tuple[list[PlannedJoin], list[NotPlanned]]:
    """Keep at most `per_day` joins of one series per UTC day (the earliest): an RRULE such
    as FREQ=MINUTELY must not turn one invitation into hundreds of bots."""
    kept: list[PlannedJoin] = []
    dropped: list[NotPlanned] = []
    per: dict[object, int] = {}
    for plan in sorted(plans, key=lambda p: (p.start, p.recurrence_id)):
        day = plan.start.date()
        per[day] = per.get(day, 0) + 1
        if per[day] <= per_day:
            kept.append(plan)
        else:
            dropped.append(NotPlanned(plan.recurrence_id, plan.start, NotPlannedReason.SERIES_DAILY_CAP))
    kept.sort(key=lambda p: (p.join_at, p.recurrence_id))
    return kept, dropped


def no_join_reason(*, accepted: bool, all_day: bool) -> str | None:
    """Why an accepted invitation will never get a join, for the meeting view (None: it will)."""
    return ALL_DAY if accepted and all_day else None


def _same_target(e: ExistingJoin, d: PlannedJoin) -> bool:
    return e.start == d.start and e.end == d.end and e.meeting_url == d.meeting_url


def _change_reason(e: ExistingJoin, d: PlannedJoin) -> CancelReason:
    return CancelReason.LINK_CHANGED if e.meeting_url != d.meeting_url else CancelReason.RESCHEDULED


def diff_joins(
    existing: Sequence[ExistingJoin],
    desired: Sequence[PlannedJoin],
    *,
    window_end: datetime | None = None,
    now: datetime | None = None,
    absent_reason: CancelReason = CancelReason.OCCURRENCE_CANCELLED,
    unplanned: dict[str, str] | None = None,
) -> JoinChanges:
    """Diff the stored joins of ONE event against plan_joins() output.

    Matching is by recurrence_id. Rules:
    * scheduled join, desired differs (join_at/start/end/url) -> move;
      if both the stored and desired join_at are already due (<= now), it is
      unchanged: plan_joins() clamps join_at to `now`, which must not cause
      a move on every re-plan.
    * active join (dispatching/joining/waiting_room/in_call) with the same
      start/end/url -> unchanged; if the occurrence moved or its link changed
      -> cancel (the service stops the bot) and create the new plan.
    * stored live join whose occurrence is not desired -> cancel, except:
      start >= window_end (outside the planning horizon, not re-planned), or
      an active join whose meeting has ended by `now` (it overran; the bot
      leaves by itself), or a scheduled join whose meeting has ended by `now`
      (no bot was ever sent: missed). The reason is `unplanned[rid]` when the
      occurrence still exists (its link or slot changed), else `absent_reason`
      (the caller knows whether the event, the PAL or the instance went).
    * terminal joins are history: a desired join with the same start/end/url
      is not created again only if a bot really went (went_to_meeting); a
      cancelled or missed join does not block a re-invitation or a restored
      EXDATE. A rescheduled occurrence gets a new join.
    * duplicate live joins for one occurrence: the extras are cancelled.
    """
    unplanned = unplanned or {}
    changes = JoinChanges()
    by_rid: dict[str, list[ExistingJoin]] = {}
    for e in existing:
        by_rid.setdefault(e.recurrence_id, []).append(e)
    wanted = {d.recurrence_id for d in desired}

    for d in desired:
        group = by_rid.get(d.recurrence_id, [])
        live = sorted(
            (e for e in group if e.status in LIVE_STATUSES),
            key=lambda e: (e.status == SCHEDULED, e.id),  # active first
        )
        if not live:
            if not any(_same_target(e, d) and went_to_meeting(e.status, e.reason) for e in group):
                changes.create.append(d)
            continue
        e, extras = live[0], live[1:]
        for extra in extras:
            changes._cancel(extra, CancelReason.DUPLICATE)
        if e.status != SCHEDULED:
            if _same_target(e, d):
                changes.unchanged.append(e)
            else:
                changes._cancel(e, _change_reason(e, d))
                changes.create.append(d)
        elif _same_target(e, d) and (
            e.join_at == d.join_at or (now is not None and e.join_at <= now and d.join_at <= now)
        ):
            changes.unchanged.append(e)
        else:
            changes.move.append((e, d))

    for e in existing:
        if e.recurrence_id in wanted or e.status not in LIVE_STATUSES:
            continue
        beyond = window_end is not None and e.start >= window_end
        ended = now is not None and e.end <= now
        if beyond or (ended and e.status in ACTIVE_STATUSES):
            changes.unchanged.append(e)
        elif ended:
            changes.missed.append(e)
        else:
            changes._cancel(e, unplanned.get(e.recurrence_id, absent_reason))
    return changes


def overlaps(a_start: datetime, a_end: datetime, b_start: datetime, b_end: datetime) -> bool:
    """Half-open intervals [a_start, a_end) and [b_start, b_end) intersect."""
    return a_start < b_end and b_start < a_end


def dedupe_key(pal_id: int | str, meeting_url: str) -> str:
    """Key for "one bot per (PAL, meeting URL)"; combine with overlaps() for time.

    Scheme and host are case-insensitive, a trailing slash and a fragment do
    not change the meeting; the path and query are kept (Zoom's pwd matters).
    """
    parts = urlsplit(meeting_url.strip())
    path = parts.path.rstrip("/")
    if (parts.hostname or "").lower() == "meet.google.com":
        path = path.lower()  # Meet codes are case-insensitive
    url = urlunsplit((parts.scheme.lower(), parts.netloc.lower(), path, parts.query, ""))
    return f"{pal_id}|{url}"
