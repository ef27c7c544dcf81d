"""Expand a stored event into concrete occurrences inside a time window.

Pure, no I/O. recurring-ical-events does RRULE/RDATE/EXDATE, overrides and
DST (recurrences are expanded in local wall time, so a 09:00 America/New_York
weekly meeting stays at 09:00 local across transitions).

All-day occurrences start at 00:00 UTC of their date and end at 00:00 UTC of
their end date: all-day events have no instant of their own, and the service
only needs them to be ordered and not joined (they rarely carry a Meet link).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import icalendar
import recurring_ical_events

from app.domain.calendar_state import (
    StoredEvent,
    is_all_day,
    is_cancelled,
    load_state,
    rid_key,
    sequence_of,
    to_utc,
)
from app.domain.meeting_links import MeetingLink, find_meeting_link

MAX_OCCURRENCES = 1000  # returned per call
SINGLE_ID = ""  # recurrence_id of a one-off event: stable when the event moves
# Steps a rule may take from DTSTART to the window end. A denser rule (e.g.
# FREQ=SECONDLY, or HOURLY for decades) is not expanded: no meeting recurs
# like that, and recurring-ical-events walks every step from DTSTART.
MAX_RULE_STEPS = 200_000

_RANK = {"SECONDLY": 0, "MINUTELY": 1, "HOURLY": 2, "DAILY": 3, "WEEKLY": 4, "MONTHLY": 5, "YEARLY": 6}
_PERIOD_SECONDS = (1, 60, 3600, 86400, 7 * 86400, 28 * 86400, 365 * 86400)
# BYxxx part -> (rank of its unit, values per enclosing unit). Per RFC 5545 a
# part finer than FREQ expands the set, a coarser-or-equal one limits it.
_PARTS = {
    "BYSECOND": (0, 60),
    "BYMINUTE": (1, 60),
    "BYHOUR": (2, 24),
    "BYDAY": (3, 7),
    "BYMONTHDAY": (3, 31),
    "BYYEARDAY": (3, 366),
    "BYWEEKNO": (4, 53),
    "BYMONTH": (5, 12),
}


class UnplannableEvent(ValueError):
    """A stored event whose times recurring-ical-events cannot expand."""


@dataclass(frozen=True)
class Occurrence:
    """One concrete instance of an event, in UTC."""

    recurrence_id: str  # rid_key(); a one-off event (no RRULE/RDATE/overrides) uses SINGLE_ID
    start: datetime  # UTC, tz-aware
    end: datetime  # UTC
    link: MeetingLink | None  # per occurrence: an override can change the link
    summary: str
    all_day: bool = False  # a DATE-valued DTSTART: no meeting time, so never joined


def _too_dense(master: icalendar.cal.Event, window_end: datetime) -> bool:
    """Would expanding the RRULE up to window_end take more than MAX_RULE_STEPS?"""
    rule = master.get("RRULE")
    if isinstance(rule, list):
        rule = rule[0] if rule else None
    if rule is None or master.get("DTSTART") is None:
        return False
    count = rule.get("COUNT")
    if count and int(count[0]) <= MAX_RULE_STEPS:
        return False
    rank = _RANK.get(str((rule.get("FREQ") or ["DAILY"])[0]).upper(), 3)
    interval = max(1, int((rule.get("INTERVAL") or [1])[0]))
    factor = 1.0
    for part, (unit, per_unit) in _PARTS.items():
        values = rule.get(part) or []
        if values:
            factor *= len(values) if unit < rank else min(1.0, len(values) / per_unit)
    span = (window_end - to_utc(master["DTSTART"].dt)).total_seconds()
    return span / (_PERIOD_SECONDS[rank] * interval) * factor > MAX_RULE_STEPS


def _end_of(comp: icalendar.cal.Event, start: date | datetime) -> datetime:
    end = comp.get("DTEND")
    if end is not None:
        return to_utc(end.dt)
    duration = comp.get("DURATION")
    if duration is not None and isinstance(duration.dt, timedelta):
        return to_utc(start) + duration.dt
    # RFC 5545 3.6.1: no DTEND/DURATION = one day for DATE, zero length otherwise.
    return to_utc(start) + (timedelta(days=1) if not isinstance(start, datetime) else timedelta())


def _strip_range(comp: icalendar.cal.Event) -> icalendar.cal.Event:
    """THISANDFUTURE on a REQUEST override is applied to that instance only.

    recurring-ical-events would stamp the same RECURRENCE-ID on every later
    occurrence, which breaks per-occurrence identity; no major vendor sends
    RANGE anyway (they split the series), so "no duplicates" is the goal.
    """
    rid = comp.get("RECURRENCE-ID")
    if rid is not None and "RANGE" in rid.params:
        comp = copy.deepcopy(comp)
        del comp["RECURRENCE-ID"].params["RANGE"]
    return comp


def expand_occurrences(
    event: StoredEvent,
    window_start: datetime,
    window_end: datetime,
    *,
    limit: int = MAX_OCCURRENCES,
) -> list[Occurrence]:
    """Occurrences overlapping [window_start, window_end), sorted by start.

    Includes an occurrence that began before window_start but has not ended
    (meeting in progress). Excludes cancelled instances, STATUS:CANCELLED
    components and everything of a cancelled event. At most `limit` items.
    Raises UnplannableEvent for data that icalendar or recurring-ical-events trip over.
    """
    if event.cancelled or window_end <= window_start:
        return []
    try:
        return _expand(event, window_start, window_end, limit)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:  # malformed data parsing let through
        raise UnplannableEvent(f"{event.uid[:200]}: cannot expand ({type(exc).__name__}: {exc})") from exc


def _small_sequence(comp: icalendar.cal.Event) -> icalendar.cal.Event:
    """recurring-ical-events compares SEQUENCE numerically, and a huge one (Exchange) is
    vBroken text. The state holds one component per instance already, so only the
    type matters here, not the order."""
    raw = comp.get("SEQUENCE")
    if raw is not None and not isinstance(raw, int):
        value = min(sequence_of(comp), 2**31 - 1)
        comp.pop("SEQUENCE")
        comp.add("SEQUENCE", value)
    return comp


def _expand(event: StoredEvent, window_start: datetime, window_end: datetime, limit: int) -> list[Occurrence]:
    state = load_state(event)
    all_day = is_all_day(state.master)
    cancelled = set(event.cancelled_instances)
    range_cancels: list[str] = []  # RECURRENCE-ID;RANGE=THISANDFUTURE cancellations

    cal = icalendar.Calendar()
    cal.add("PRODID", "-//pal-meetings//occurrences//EN")
    cal.add("VERSION", "2.0")
    for tz in state.timezones.values():
        cal.add_component(tz)
    if state.master is not None and not is_cancelled(state.master):
        master = state.master
        if _too_dense(master, window_end):
            master = copy.deepcopy(master)
            del master["RRULE"]
        cal.add_component(_small_sequence(master))
    for key, comp in state.overrides.items():
        if is_cancelled(comp):
            cancelled.add(key)
            if str(comp["RECURRENCE-ID"].params.get("RANGE", "")).upper() == "THISANDFUTURE":
                range_cancels.append(key)
            continue  # filtered below by id, so the master's instance goes too
        cal.add_component(_small_sequence(_strip_range(comp)))

    # A one-off event keeps one identity when it is moved, so its join is moved
    # rather than cancelled and re-created.
    single = (state.master is not None and not state.overrides
              and state.master.get("RRULE") is None and state.master.get("RDATE") is None)
    out: list[Occurrence] = []
    # between() generates each series in one pass; after() re-queries in
    # ever smaller chunks and is quadratic for dense rules. The extra day
    # catches all-day events, which recurring-ical-events compares in local time.
    instances = recurring_ical_events.of(cal, skip_bad_series=True).between(
        window_start - timedelta(days=1), window_end)
    for comp in instances:
        raw_start = comp["DTSTART"].dt
        start = to_utc(raw_start)
        end = max(_end_of(comp, raw_start), start)
        if start >= window_end or (end <= window_start and start < window_start):
            continue
        if is_cancelled(comp):
            continue
        rid = comp.get("RECURRENCE-ID")
        whole_day = is_all_day(comp)
        key = rid_key(rid.dt if rid is not None else raw_start, all_day=all_day or whole_day)
        if key in cancelled or any(len(key) == len(r) and key >= r for r in range_cancels):
            continue
        if single:
            key = SINGLE_ID
        out.append(
            Occurrence(
                recurrence_id=key,
                start=start,
                end=end,
                link=find_meeting_link(comp),
                summary=str(comp.get("SUMMARY", "")),
                all_day=whole_day,
            )
        )
    out.sort(key=lambda o: (o.start, o.recurrence_id))
    return out[: max(0, limit)]
