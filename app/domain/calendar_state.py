"""Apply iTIP REQUEST/CANCEL messages to the stored copy of one event.

Pure domain logic, no I/O. One stored event = one calendar object per
(PAL, organizer, UID): the master (if known) plus RECURRENCE-ID overrides.

Ordering rules (see shared/corpus/CONFORMANCE.md):

* "newer" = higher SEQUENCE, or equal SEQUENCE and later DTSTAMP (Thunderbird's
  rule; Google keeps SEQUENCE on minor edits, so DTSTAMP is the tiebreak).
* A REQUEST must be strictly newer than what it replaces. Equal SEQUENCE and
  equal DTSTAMP is a re-delivery: outcome STALE with reason "duplicate".
* Ordering is per instance: an override is compared with the stored override
  for the same RECURRENCE-ID, falling back to the master.
* A CANCEL is accepted when it is not older (equal SEQUENCE counts: Outlook for
  Mac repeats the last SEQUENCE in its CANCEL).
* Revival: something cancelled (the series, one instance, or an instance the
  master EXDATEs) comes back only through a REQUEST whose SEQUENCE is strictly
  greater than the cancellation's. A fresh DTSTAMP alone is not enough, since
  organizers re-send minor updates with the same SEQUENCE (case 33), and a
  full REQUEST that merely omits a cancelled instance never revives it
  (case 40): stored cancelled overrides survive master replacement.
* Organizer change on a known UID is SPOOF, even within the same domain: a
  shared domain (gmail.com, outlook.com) proves nothing. Addresses are compared
  as given (lower-cased, "mailto:" stripped); the caller resolves relays such
  as iCloud's imip.me.com to the real address first.
* A CANCEL for an unknown UID is IGNORED; no tombstone is created here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from typing import Any, Iterable

import icalendar
from icalendar.prop import vText

from app.domain.meeting_links import find_meeting_link
from app.domain.timezones import parse_ics

UTC = timezone.utc
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PRODID = "-//pal-meetings//calendar-state//EN"


class Outcome(str, Enum):
    """What apply_message did."""

    CREATED = "created"
    UPDATED = "updated"
    STALE = "stale"  # older or duplicate message; nothing changed
    CANCELLED = "cancelled"  # whole event/series
    INSTANCES_CANCELLED = "instances_cancelled"
    REMOVED = "removed"  # the PAL was uninvited; stored copy is cancelled
    SPOOF = "spoof"  # known UID, different organizer; rejected
    IGNORED = "ignored"  # unsupported method, unknown UID CANCEL, no VEVENT


@dataclass(frozen=True)
class StoredEvent:
    """Attendee-side copy of one event (master + overrides) as an ICS string."""

    uid: str
    organizer: str  # lower-case address
    sequence: int  # of the master, or the highest override SEQUENCE if no master
    dtstamp: datetime | None  # UTC, same component as `sequence`
    ics: str  # VCALENDAR: VTIMEZONEs, master (if any), overrides
    cancelled: bool  # whole event/series cancelled
    cancelled_instances: frozenset[str] = frozenset()  # recurrence ids, see rid_key()


@dataclass(frozen=True)
class ApplyResult:
    """Outcome plus the state to persist (None = keep what is stored)."""

    outcome: Outcome
    event: StoredEvent | None = None
    significant: bool = False  # time/recurrence/link/status changed
    instances: frozenset[str] = frozenset()  # ids cancelled by this message
    reason: str = ""
    warnings: tuple[str, ...] = ()


# --- value helpers -----------------------------------------------------------


def to_utc(value: date | datetime) -> datetime:
    """UTC instant; a DATE is 00:00 UTC of that date, floating time is taken as UTC."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def rid_key(value: date | datetime, *, all_day: bool) -> str:
    """Canonical recurrence id: "YYYYMMDDTHHMMSSZ" (UTC) or "YYYYMMDD" (all-day).

    On an all-day series a DATE-TIME RECURRENCE-ID (Exchange sends local
    midnight with a TZID) is reduced to its wall-clock date, because the
    UTC instant of local midnight falls on the previous day east of UTC.
    """
    if all_day or not isinstance(value, datetime):
        return value.strftime("%Y%m%d")
    return to_utc(value).strftime("%Y%m%dT%H%M%SZ")


def normalise_address(value: Any) -> str:
    """Lower-case address without a "mailto:" prefix."""
    text = str(value or "").strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    return text.strip().lower()


# The stored SEQUENCE is a BIGINT; a larger one (seen in the wild) orders like the largest.
MAX_SEQUENCE = 2**63 - 1


def sequence_of(comp: icalendar.cal.Component) -> int:
    """SEQUENCE as int; icalendar gives vBroken for values beyond 32 bits."""
    raw = comp.get("SEQUENCE")
    if raw is None:
        return 0
    try:
        return min(max(0, int(str(raw).strip())), MAX_SEQUENCE)
    except ValueError:
        return 0


def dtstamp_of(comp: icalendar.cal.Component) -> datetime | None:
    """DTSTAMP as an aware UTC datetime, or None."""
    prop = comp.get("DTSTAMP")
    value = getattr(prop, "dt", None)
    return to_utc(value) if isinstance(value, (date, datetime)) else None


def _version(comp: icalendar.cal.Component) -> tuple[int, datetime]:
    return sequence_of(comp), dtstamp_of(comp) or _EPOCH


def compare_versions(a: icalendar.cal.Component, b: icalendar.cal.Component) -> int:
    """-1/0/1: SEQUENCE first, DTSTAMP as tiebreak (missing DTSTAMP = oldest)."""
    va, vb = _version(a), _version(b)
    return (va > vb) - (va < vb)


def is_cancelled(comp: icalendar.cal.Component) -> bool:
    return str(comp.get("STATUS", "")).strip().upper() == "CANCELLED"


def is_all_day(comp: icalendar.cal.Component | None) -> bool:
    prop = comp.get("DTSTART") if comp is not None else None
    value = getattr(prop, "dt", None)
    return isinstance(value, date) and not isinstance(value, datetime)


def _person(prop: Any) -> str:
    """`Name <address>` (or one of them) of an ORGANIZER / ATTENDEE property."""
    address = normalise_address(prop)
    name = str(getattr(prop, "params", {}).get("CN") or "").strip().strip('"')
    if name and address and name.lower() != address:
        return f"{name} <{address}>"
    return name or address


def meeting_people(ics: str, limit: int = 200) -> tuple[str, list[str]]:
    """The organizer and up to `limit` attendees of a stored calendar (its first VEVENT), for the
    PAL's context; ("", []) when it cannot be read."""
    try:
        cal = icalendar.Calendar.from_ical(ics)
    except Exception:  # stored data went through ingestion; a surprise here must not stop a meeting
        return "", []
    for comp in cal.walk("VEVENT"):
        organizer = _person(comp["ORGANIZER"]) if comp.get("ORGANIZER") is not None else ""
        raw = comp.get("ATTENDEE")
        people = [_person(a) for a in (raw if isinstance(raw, list) else [raw] if raw is not None else [])]
        return organizer, [p for p in people if p][:limit]
    return "", []


def attendees_of(comps: Iterable[icalendar.cal.Component]) -> set[str]:
    """All ATTENDEE addresses (value and EMAIL parameter), normalised."""
    found: set[str] = set()
    for comp in comps:
        raw = comp.get("ATTENDEE")
        for att in raw if isinstance(raw, list) else ([raw] if raw is not None else []):
            found.add(normalise_address(att))
            email = getattr(att, "params", {}).get("EMAIL")
            if email:
                found.add(normalise_address(email))
    found.discard("")
    return found


def _set(comp: icalendar.cal.Component, name: str, value: Any) -> None:
    comp.pop(name, None)
    comp.add(name, value)


def _dates(comp: icalendar.cal.Component, name: str) -> list[date | datetime]:
    """Values of EXDATE/RDATE, however many lines they span (PERIODs -> start)."""
    raw = comp.get(name)
    out: list[date | datetime] = []
    for line in raw if isinstance(raw, list) else ([raw] if raw is not None else []):
        for item in getattr(line, "dts", []):
            value = item.dt
            if isinstance(value, tuple):
                value = value[0]
            if isinstance(value, (date, datetime)):
                out.append(value)
    return out


# --- stored state ---------------------------------------------------------------


@dataclass
class _State:
    master: icalendar.cal.Event | None = None
    overrides: dict[str, icalendar.cal.Event] = field(default_factory=dict)
    timezones: dict[str, icalendar.cal.Component] = field(default_factory=dict)

    def components(self) -> list[icalendar.cal.Event]:
        head = [self.master] if self.master is not None else []
        return head + [self.overrides[k] for k in sorted(self.overrides)]


def _split(
    comps: list[icalendar.cal.Event], all_day_hint: bool | None, warnings: list[str]
) -> _State:
    state = _State()
    for comp in comps:
        if comp.get("RECURRENCE-ID") is None:
            if state.master is None:
                state.master = comp
            else:  # iCloud sends two masters for one UID (case 25)
                warnings.append("several VEVENTs without RECURRENCE-ID; kept the first")
    all_day = is_all_day(state.master) if state.master is not None else all_day_hint
    for comp in comps:
        rid = comp.get("RECURRENCE-ID")
        if rid is None:
            continue
        key = rid_key(rid.dt, all_day=is_all_day(comp) if all_day is None else all_day)
        old = state.overrides.get(key)
        if old is None or compare_versions(comp, old) > 0:
            state.overrides[key] = comp
    return state


def _timezones(cal: icalendar.Calendar) -> dict[str, icalendar.cal.Component]:
    return {str(tz.get("TZID")): tz for tz in cal.walk("VTIMEZONE")}


def load_state(event: StoredEvent) -> _State:
    """Parse a StoredEvent's ICS into master/overrides/timezones."""
    cal = parse_ics(event.ics)
    comps = [c for c in cal.walk("VEVENT") if str(c.get("UID", "")) == event.uid]
    state = _split(comps, None, [])
    state.timezones = _timezones(cal)
    return state


_DATE_PROPS = ("DTSTART", "DTEND", "RECURRENCE-ID", "EXDATE", "RDATE")


def _pin_tzids(comp: icalendar.cal.Component) -> None:
    """Write IANA keys into TZID parameters before serialising.

    normalise_calendar() resolves display-name TZIDs ("(UTC-05:00) Eastern...")
    to ZoneInfo but keeps the original parameter; stored as-is they would
    come back as floating times when the ICS is parsed again.
    """
    for name in _DATE_PROPS:
        raw = comp.get(name)
        for line in raw if isinstance(raw, list) else ([raw] if raw is not None else []):
            for item in getattr(line, "dts", None) or [line]:
                value = getattr(item, "dt", None)
                key = getattr(getattr(value, "tzinfo", None), "key", None)
                if not isinstance(value, datetime) or not key:
                    continue
                for holder in {id(line): line, id(item): item}.values():
                    params = getattr(holder, "params", None)
                    if params is None:
                        continue
                    if key in ("UTC", "Etc/UTC"):
                        params.pop("TZID", None)
                    else:
                        params["TZID"] = key


def _build(uid: str, organizer: str, state: _State) -> StoredEvent:
    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    for tzid in sorted(state.timezones):
        cal.add_component(state.timezones[tzid])
    comps = state.components()
    for comp in comps:
        _pin_tzids(comp)
        cal.add_component(comp)
    head = state.master if state.master is not None else max(comps, key=_version)
    return StoredEvent(
        uid=uid,
        organizer=organizer,
        sequence=sequence_of(head),
        dtstamp=dtstamp_of(head),
        ics=cal.to_ical().decode("utf-8"),
        cancelled=all(is_cancelled(c) for c in comps),
        cancelled_instances=frozenset(k for k, c in state.overrides.items() if is_cancelled(c)),
    )


# --- significance --------------------------------------------------------------


def _rrule_fp(comp: icalendar.cal.Event) -> tuple:
    rule = comp.get("RRULE")
    if isinstance(rule, list):
        rule = rule[0] if rule else None
    if rule is None:
        return ()
    parts = []
    for name, values in rule.items():
        vals = values if isinstance(values, list) else [values]
        if name.upper() == "INTERVAL" and [str(v) for v in vals] == ["1"]:
            continue  # INTERVAL=1 is the default
        norm = sorted(to_utc(v).isoformat() if isinstance(v, date) else str(v).upper() for v in vals)
        parts.append((name.upper(), tuple(norm)))
    return tuple(sorted(parts))


def _end_fp(comp: icalendar.cal.Event) -> str:
    end = comp.get("DTEND")
    if end is not None:
        return to_utc(end.dt).isoformat()
    duration = comp.get("DURATION")
    return str(duration.dt) if duration is not None else ""


def _component_fp(comp: icalendar.cal.Event, all_day: bool) -> tuple:
    start = comp.get("DTSTART")
    link = find_meeting_link(comp)
    return (
        to_utc(start.dt).isoformat() if start is not None else "",
        _end_fp(comp),
        _rrule_fp(comp),
        tuple(sorted(rid_key(d, all_day=all_day) for d in _dates(comp, "RDATE"))),
        tuple(sorted(rid_key(d, all_day=all_day) for d in _dates(comp, "EXDATE"))),
        str(comp.get("STATUS", "")).upper(),
        link.url if link else "",
    )


def _duration(comp: icalendar.cal.Event) -> timedelta:
    start = comp.get("DTSTART")
    end = comp.get("DTEND")
    if start is not None and end is not None:
        return to_utc(end.dt) - to_utc(start.dt)
    duration = comp.get("DURATION")
    return duration.dt if duration is not None and isinstance(duration.dt, timedelta) else timedelta()


def _is_plain_instance(comp: icalendar.cal.Event, master: icalendar.cal.Event, all_day: bool) -> bool:
    """Does this override only change metadata (title, location...) of its instance?"""
    start, rid = comp.get("DTSTART"), comp.get("RECURRENCE-ID")
    if start is None or rid is None or is_cancelled(comp) != is_cancelled(master):
        return False
    link, master_link = find_meeting_link(comp), find_meeting_link(master)
    return (
        rid_key(start.dt, all_day=all_day) == rid_key(rid.dt, all_day=all_day)
        and _duration(comp) == _duration(master)
        and (link.url if link else "") == (master_link.url if master_link else "")
    )


def _fingerprint(state: _State) -> tuple:
    """What matters for joining: times, recurrence, status and link (like sabre's md5).

    Overrides that keep their instance's time, duration, status and link are
    left out, so a title-only exception is not a significant change.
    """
    master, all_day = state.master, is_all_day(state.master)
    head = _component_fp(master, all_day) if master is not None else ()
    rest = tuple(
        (key, _component_fp(comp, all_day))
        for key, comp in sorted(state.overrides.items())
        if master is None or not _is_plain_instance(comp, master, all_day)
    )
    return head, rest


# --- REQUEST / CANCEL ---------------------------------------------------------------


def _accept_over(new: icalendar.cal.Event, ref: icalendar.cal.Event, *, fresh: bool) -> bool:
    """May `new` replace (or be added next to) `ref`?

    A cancelled reference is only revived by a strictly higher SEQUENCE.
    `fresh` = no stored override for this instance: not-older suffices.
    """
    if is_cancelled(ref) and not is_cancelled(new):
        return sequence_of(new) > sequence_of(ref)
    cmp = compare_versions(new, ref)
    return cmp >= 0 if fresh else cmp > 0


def _exdate_keys(master: icalendar.cal.Event, all_day: bool) -> set[str]:
    return {rid_key(d, all_day=all_day) for d in _dates(master, "EXDATE")}


def _drop_exdate(master: icalendar.cal.Event, key: str, all_day: bool) -> None:
    keep = [d for d in _dates(master, "EXDATE") if rid_key(d, all_day=all_day) != key]
    master.pop("EXDATE", None)
    for value in keep:
        master.add("EXDATE", value)


def _merge_overrides(new: _State, msg: _State, all_day: bool) -> tuple[int, int]:
    """Merge the message's overrides one by one, each by its own ordering.

    Returns (accepted, duplicates)."""
    accepted = 0
    duplicates = 0
    for key, comp in msg.overrides.items():
        stored = new.overrides.get(key)
        if stored is not None:
            ok = _accept_over(comp, stored, fresh=False)
            duplicates += compare_versions(comp, stored) == 0
        elif new.master is None:
            ok = True
        elif key in _exdate_keys(new.master, all_day):
            # An EXDATE is the master's cancellation of this instance.
            ok = sequence_of(comp) > sequence_of(new.master)
            if ok:
                _drop_exdate(new.master, key, all_day)
        else:
            ok = _accept_over(comp, new.master, fresh=True)
        if ok:
            new.overrides[key] = comp
            accepted += 1
    return accepted, duplicates


def _apply_request(old: _State, msg: _State) -> tuple[_State, str]:
    """Merge a REQUEST into a copy of `old`; returns (new state, stale reason or "")."""
    new = _State(copy.deepcopy(old.master), copy.deepcopy(old.overrides), dict(old.timezones))
    all_day = is_all_day(new.master if new.master is not None else msg.master)
    if msg.master is not None:
        ref = old.master
        if ref is not None and not _accept_over(msg.master, ref, fresh=False):
            if is_cancelled(ref):
                return new, "series is cancelled; needs a higher SEQUENCE to revive"
            if compare_versions(msg.master, ref) != 0 or not msg.overrides:
                return new, "duplicate" if compare_versions(msg.master, ref) == 0 else "older SEQUENCE/DTSTAMP"
            # The same master re-sent beside a changed instance: each instance has its
            # own ordering, so the new override counts even though the master did not change.
            accepted, _ = _merge_overrides(new, msg, all_day)
            if not accepted:
                return new, "duplicate"
            new.timezones.update(msg.timezones)
            return new, ""
        new.master = msg.master
        kept: dict[str, icalendar.cal.Event] = {}
        for key, comp in new.overrides.items():
            # The organizer's full REQUEST is authoritative for active overrides,
            # but cancellations and overrides newer than this master survive.
            if is_cancelled(comp) or ref is None or compare_versions(comp, msg.master) > 0:
                kept[key] = comp
        for key, comp in msg.overrides.items():
            stored = kept.get(key)
            if stored is None or _accept_over(comp, stored, fresh=False):
                kept[key] = comp
        new.overrides = kept
    else:
        accepted, duplicates = _merge_overrides(new, msg, all_day)
        if not accepted:
            return new, "duplicate" if duplicates == len(msg.overrides) else "older SEQUENCE/DTSTAMP"
    new.timezones.update(msg.timezones)
    return new, ""


def _cancel_copy(base: icalendar.cal.Event, msg: icalendar.cal.Event) -> icalendar.cal.Event:
    out = copy.deepcopy(base)
    _set(out, "STATUS", "CANCELLED")
    sequence = max(sequence_of(out), sequence_of(msg))
    # icalendar refuses integers beyond 32 bits, which Exchange sends; write those as text.
    _set(out, "SEQUENCE", sequence if sequence <= 2**31 - 1 else vText(str(sequence)))
    stamp = dtstamp_of(msg)
    if stamp is not None:
        _set(out, "DTSTAMP", stamp)
    return out


def _apply_cancel(
    old: _State, msg: _State, pal: str, organizer: str
) -> tuple[_State, Outcome, frozenset[str], str]:
    """Returns (new state, outcome, cancelled instance ids, stale reason)."""
    comps = old.components()
    if msg.master is not None or not msg.overrides:
        whole = msg.master if msg.master is not None else next(iter(msg.overrides.values()))
        if all(is_cancelled(c) for c in comps):
            return old, Outcome.STALE, frozenset(), "already cancelled"
        ref = old.master if old.master is not None else max(comps, key=_version)
        if compare_versions(whole, ref) < 0:
            return old, Outcome.STALE, frozenset(), "older SEQUENCE/DTSTAMP"
        new = _State(
            _cancel_copy(old.master, whole) if old.master is not None else None,
            {k: c if is_cancelled(c) else _cancel_copy(c, whole) for k, c in old.overrides.items()},
            dict(old.timezones),
        )
        # RFC 5546 3.2.5: STATUS:CANCELLED cancels the event; without it the
        # CANCEL uninvites the listed attendees. Others stay invited -> REMOVED.
        others = attendees_of(comps) - attendees_of([whole]) - {pal, organizer}
        removed = not is_cancelled(whole) and bool(attendees_of([whole])) and bool(others)
        return new, Outcome.REMOVED if removed else Outcome.CANCELLED, frozenset(), ""

    if old.master is not None and is_cancelled(old.master):
        return old, Outcome.STALE, frozenset(), "already cancelled"
    new = _State(copy.deepcopy(old.master), dict(old.overrides), dict(old.timezones))
    ids: set[str] = set()
    for key, comp in msg.overrides.items():
        stored = old.overrides.get(key)
        ref = stored if stored is not None else old.master
        if stored is not None and is_cancelled(stored):
            continue
        if ref is not None and compare_versions(comp, ref) < 0:
            continue
        out = _cancel_copy(stored if stored is not None else comp, comp)
        out["RECURRENCE-ID"] = comp["RECURRENCE-ID"]  # keeps RANGE= if any
        if out.get("DTSTART") is None:
            out.add("DTSTART", comp["RECURRENCE-ID"].dt)
        new.overrides[key] = out
        ids.add(key)
        if str(comp["RECURRENCE-ID"].params.get("RANGE", "")).upper() == "THISANDFUTURE":
            for later, other in list(new.overrides.items()):
                if later > key and len(later) == len(key) and not is_cancelled(other):
                    new.overrides[later] = _cancel_copy(other, comp)
                    ids.add(later)
    if not ids:
        return old, Outcome.STALE, frozenset(), "instances already cancelled or message older"
    return new, Outcome.INSTANCES_CANCELLED, frozenset(ids), ""


def apply_message(
    stored: StoredEvent | None,
    *,
    method: str,
    calendar: icalendar.Calendar,
    uid: str,
    organizer: str,
    pal_address: str,
) -> ApplyResult:
    """Apply one iTIP REQUEST or CANCEL for `uid` to the stored event.

    `calendar` is already normalised (time zones resolved); `organizer` is the
    resolved organizer address. Other methods (REPLY, PUBLISH, COUNTER, ...)
    are IGNORED. The returned `event` is the full new state to persist.
    """
    method = method.strip().upper()
    organizer = normalise_address(organizer)
    pal = normalise_address(pal_address)
    if method not in ("REQUEST", "CANCEL"):
        return ApplyResult(Outcome.IGNORED, reason=f"unsupported method {method or '(none)'}")
    comps = [copy.deepcopy(c) for c in calendar.walk("VEVENT") if str(c.get("UID", "")) == uid]
    if not comps:
        return ApplyResult(Outcome.IGNORED, reason="no VEVENT with this UID")
    if stored is not None and normalise_address(stored.organizer) != organizer:
        return ApplyResult(
            Outcome.SPOOF, reason=f"organizer {organizer!r} differs from stored {stored.organizer!r}"
        )

    warnings: list[str] = []
    old = load_state(stored) if stored is not None else None
    hint = is_all_day(old.master) if old is not None and old.master is not None else None
    msg = _split(comps, hint, warnings)
    msg.timezones = _timezones(calendar)

    if method == "CANCEL":
        if old is None:
            return ApplyResult(Outcome.IGNORED, reason="CANCEL for an unknown UID")
        new, outcome, ids, reason = _apply_cancel(old, msg, pal, organizer)
        if outcome is Outcome.STALE:
            return ApplyResult(outcome, reason=reason, warnings=tuple(warnings))
        return ApplyResult(outcome, _build(uid, organizer, new), True, ids, warnings=tuple(warnings))

    if msg.master is not None and msg.master.get("DTSTART") is None:
        return ApplyResult(Outcome.IGNORED, reason="REQUEST without DTSTART", warnings=tuple(warnings))
    for comp in msg.overrides.values():
        if comp.get("DTSTART") is None:  # an unmoved instance starts at its RECURRENCE-ID
            comp.add("DTSTART", comp["RECURRENCE-ID"].dt)
    if old is None:
        return ApplyResult(Outcome.CREATED, _build(uid, organizer, msg), True, warnings=tuple(warnings))

    new, stale = _apply_request(old, msg)
    if stale:
        return ApplyResult(Outcome.STALE, reason=stale, warnings=tuple(warnings))
    outcome = Outcome.UPDATED
    if msg.master is not None and pal in attendees_of(old.components()):
        listed = attendees_of(msg.components())
        if listed and pal not in listed:  # PAL dropped from the guest list
            new.master = _cancel_copy(new.master, msg.master)
            new.overrides = {k: c if is_cancelled(c) else _cancel_copy(c, c) for k, c in new.overrides.items()}
            outcome = Outcome.REMOVED
    significant = _fingerprint(old) != _fingerprint(new)
    return ApplyResult(outcome, _build(uid, organizer, new), significant, warnings=tuple(warnings))
