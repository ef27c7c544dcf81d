"""Read an iTIP calendar into one ParsedInvite per UID.

Pure: no I/O. Only VEVENTs are read (VTODO/VJOURNAL invites yield nothing,
like sabre/vobject's broker). Times are normalised by
``timezones.normalise_calendar`` and exposed as UTC instants.

All-day events: ``start``/``end`` are midnight of the date in the calendar's
X-WR-TIMEZONE zone when it has one, otherwise midnight UTC of the date (an
all-day event has no instant; ``is_all_day`` tells the caller to show dates).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo

import icalendar
from icalendar.prop import vBroken

from app.domain.calendar_state import MAX_SEQUENCE
from app.domain.meeting_links import MeetingLink, find_meeting_link
from app.domain.timezones import (
    UnresolvedTime,
    calendar_timezone,
    normalise_calendar,
    parse_ics,
    to_utc,
    value_of,
)

REQUEST = "REQUEST"
CANCEL = "CANCEL"
REPLY = "REPLY"
COUNTER = "COUNTER"
REFRESH = "REFRESH"
PUBLISH = "PUBLISH"
ADD = "ADD"
DECLINECOUNTER = "DECLINECOUNTER"
METHODS = frozenset({REQUEST, CANCEL, REPLY, COUNTER, REFRESH, PUBLISH, ADD, DECLINECOUNTER})

MAX_CALENDAR_BYTES = 4 * 1024 * 1024  # 10,000 attendees is ~1 MB
MAX_EVENTS = 1000
MAX_UID = 1000  # calendar_events.uid is VARCHAR(1000); no real client comes close
MAX_ADDRESS = 320  # RFC 3696's longest address, and the width of every address column
RELAY_DOMAINS = ("imip.me.com",)  # iCloud: opaque relay URI, real address in EMAIL=
_DIGITS_RE = re.compile(r"[+-]?\d{1,40}")


class InvalidCalendar(ValueError):
    """The data is not a usable iCalendar object (or is too large)."""


@dataclass(frozen=True)
class ParsedInvite:
    """Everything the service needs from one UID of an iTIP message."""

    method: str  # upper-case; "" when the calendar has no METHOD
    uid: str
    organizer: str | None  # lower-case address (iCloud relay: the EMAIL= address)
    organizer_name: str | None
    organizer_uri: str | None  # lower-case address of the ORGANIZER URI: where replies go
    sequence: int
    dtstamp: datetime | None
    summary: str
    description: str
    location: str
    status: str | None  # upper-case STATUS of the master/first component
    link: MeetingLink | None
    attendees: list[str]  # lower-case addresses (URI, plus EMAIL= when different)
    components: list[icalendar.Event]  # master first, then overrides in file order
    calendar: icalendar.Calendar  # the whole normalised calendar
    start: datetime | None  # UTC; None if missing or its zone is unresolvable
    end: datetime | None
    is_all_day: bool
    has_master: bool
    is_recurring: bool  # RRULE/RDATE on the master or any RECURRENCE-ID component
    schedule_agent: str | None  # ORGANIZER SCHEDULE-AGENT parameter (CLIENT = don't reply)
    timezone_problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def master(self) -> icalendar.Event | None:
        return self.components[0] if self.has_master else None


def address(value: object) -> str:
    """'MAILTO:Bob@X.org' -> 'bob@x.org'; "" for anything with whitespace or control characters."""
    text = str(value or "").strip()
    if text[:7].lower() == "mailto:":
        text = text[7:]
    text = text.strip().lower()
    if len(text) > MAX_ADDRESS:
        return ""
    # RFC 6868 lets a parameter (EMAIL=) carry "^n": a newline in an address we reply to.
    return "" if any(c.isspace() or ord(c) < 32 or c == "\x7f" for c in text) else text


def _param(prop: object, name: str) -> str | None:
    try:
        params = getattr(prop, "params", None)
    except ValueError:  # icalendar's vBroken raises BrokenCalendarProperty
        return None
    value = params.get(name) if params is not None else None
    return str(value).strip() if value else None


def _organizer(comp: icalendar.Event) -> tuple[str | None, str | None, str | None, str | None]:
    """(address, name, uri address, schedule agent)."""
    prop = comp.get("ORGANIZER")
    if prop is None:
        return None, None, None, None
    if isinstance(prop, list):  # invalid, but seen: keep the first
        prop = prop[0]
    uri = address(prop) or None
    email = address(_param(prop, "EMAIL")) or None
    addr = uri
    if email and (not uri or "@" not in uri or uri.rsplit("@", 1)[1] in RELAY_DOMAINS):
        addr = email
    agent = _param(prop, "SCHEDULE-AGENT")
    return addr, _param(prop, "CN"), uri or email, agent.upper() if agent else None


def _attendees(comp: icalendar.Event) -> list[str]:
    props = comp.get("ATTENDEE")
    props = props if isinstance(props, list) else [props] if props is not None else []
    out: dict[str, None] = {}
    for prop in props:
        for a in (address(prop), address(_param(prop, "EMAIL"))):
            if a:
                out[a] = None
    return list(out)


def _sequence(comp: icalendar.Event) -> tuple[int, str | None]:
    """SEQUENCE as an int; huge values (vBroken in icalendar) are kept exactly."""
    raw = comp.get("SEQUENCE")
    if raw is None:
        return 0, None
    if isinstance(raw, int):
        return int(raw), None
    text = raw.to_ical().decode("utf-8", "replace") if hasattr(raw, "to_ical") else str(raw)
    m = _DIGITS_RE.search(text)
    if not m:
        return 0, f"unreadable SEQUENCE {text[:40]!r} treated as 0"
    return min(max(0, int(m.group(0))), MAX_SEQUENCE), None


def _text(comp: icalendar.Event, name: str) -> str:
    value = comp.get(name)
    if isinstance(value, list):
        value = value[0] if value else None
    return str(value) if value is not None else ""


def _instant(value: object, all_day_tz: tzinfo | None) -> datetime | None:
    if not isinstance(value, date):
        return None
    try:
        return to_utc(value, all_day_tz if not isinstance(value, datetime) else None)
    except UnresolvedTime:
        return None


def _start_end(comp: icalendar.Event, all_day_tz: tzinfo | None) -> tuple[datetime | None, datetime | None, bool]:
    start_v = value_of(comp.get("DTSTART"))
    if not isinstance(start_v, date):
        return None, None, False
    all_day = not isinstance(start_v, datetime)
    end_v = value_of(comp.get("DTEND"))
    duration = value_of(comp.get("DURATION"))
    if isinstance(end_v, date):
        pass
    elif isinstance(duration, timedelta):
        end_v = start_v + duration
    elif all_day:
        end_v = start_v + timedelta(days=1)  # RFC 5545 3.6.1: a one-day event
    else:
        end_v = start_v
    return _instant(start_v, all_day_tz), _instant(end_v, all_day_tz), all_day


def _load(data: bytes | str) -> icalendar.Calendar:
    if isinstance(data, (bytes, bytearray)):
        if len(data) > MAX_CALENDAR_BYTES:
            raise InvalidCalendar(f"calendar larger than {MAX_CALENDAR_BYTES} bytes")
        data = bytes(data).decode("utf-8", errors="replace")
    if not isinstance(data, str):
        raise InvalidCalendar("calendar must be bytes or str")
    if len(data) > MAX_CALENDAR_BYTES:
        raise InvalidCalendar(f"calendar larger than {MAX_CALENDAR_BYTES} characters")
    data = data.lstrip("\ufeff \t\r\n")
    if data[:15].upper() != "BEGIN:VCALENDAR":
        raise InvalidCalendar("not an iCalendar object")
    try:
        cal = parse_ics(data)
    except Exception as exc:  # noqa: BLE001 - icalendar raises many types on junk
        raise InvalidCalendar(f"unparseable calendar: {exc}") from exc
    if getattr(cal, "name", None) != "VCALENDAR":
        raise InvalidCalendar("not a VCALENDAR")
    return cal


_SINGLE_PROPS = ("UID", "SEQUENCE", "DTSTART", "DTEND", "DUE", "DURATION", "DTSTAMP", "RECURRENCE-ID")
_INSTANT_PROPS = ("DTSTART", "DTEND", "DUE", "RECURRENCE-ID")  # a bare TIME or a PERIOD is no instant
_DATE_PROPS = ("DTSTART", "DTEND", "DUE", "DURATION", "DTSTAMP", "RECURRENCE-ID", "RRULE", "EXRULE", "RDATE", "EXDATE")


def _check_readable(ev: icalendar.Event) -> None:
    """Refuse a VEVENT whose identity or times cannot be read: planning would trip over it later."""
    for name in dict.fromkeys(_SINGLE_PROPS + _DATE_PROPS):
        value = ev.get(name)
        if value is None:
            continue
        if isinstance(value, list) and name in _SINGLE_PROPS:
            raise InvalidCalendar(f"VEVENT with {len(value)} {name} properties")
        if name == "UID" and len(str(value)) > MAX_UID:
            raise InvalidCalendar(f"UID longer than {MAX_UID} characters")
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, vBroken) and name in _DATE_PROPS:
                raise InvalidCalendar(f"unreadable {name}: {item.to_ical().decode('utf-8', 'replace')[:80]!r}")
            if name in _INSTANT_PROPS and not isinstance(getattr(item, "dt", None), date):
                raise InvalidCalendar(f"{name} is not a date or date-time")


def parse_calendar(data: bytes | str) -> list[ParsedInvite]:
    """One ParsedInvite per UID of the calendar's VEVENTs, in file order."""
    original = _load(data)
    all_day_tz = calendar_timezone(original)
    cal, tz_problems = normalise_calendar(original)
    method = str(cal.get("METHOD", "")).strip().upper()
    events = [c for c in cal.subcomponents if c.name == "VEVENT"]
    if len(events) > MAX_EVENTS:
        raise InvalidCalendar(f"more than {MAX_EVENTS} events")

    for ev in cal.walk("VEVENT"):  # nested ones too: the calendar state walks the whole tree
        _check_readable(ev)
    by_uid: dict[str | int, list[icalendar.Event]] = {}
    for i, ev in enumerate(events):
        # A VEVENT without UID can't be matched to anything: keep it on its own.
        by_uid.setdefault(str(ev.get("UID", "")).strip() or i, []).append(ev)

    invites = []
    for key, comps in by_uid.items():
        uid = key if isinstance(key, str) else ""
        warnings: list[str] = []
        if not uid:
            warnings.append("VEVENT without UID")
        masters = [c for c in comps if c.get("RECURRENCE-ID") is None]
        overrides = [c for c in comps if c.get("RECURRENCE-ID") is not None]
        if len(masters) > 1:
            # Invalid (seen from iCloud): never create two series for one UID.
            warnings.append(f"{len(masters)} VEVENTs without RECURRENCE-ID; kept the first")
            masters = masters[:1]
        ordered = masters + overrides
        head = ordered[0]
        org, org_name, org_uri, agent = _organizer(head)
        seq, seq_warning = _sequence(head)
        if seq_warning:
            warnings.append(seq_warning)
        start, end, all_day = _start_end(head, all_day_tz)
        stamp = value_of(head.get("DTSTAMP"))
        mark = f" {uid[:80]}"
        invites.append(
            ParsedInvite(
                method=method,
                uid=uid,
                organizer=org,
                organizer_name=org_name,
                organizer_uri=org_uri,
                sequence=seq,
                dtstamp=_instant(stamp, None),
                summary=_text(head, "SUMMARY"),
                description=_text(head, "DESCRIPTION"),
                location=_text(head, "LOCATION"),
                status=_text(head, "STATUS").upper() or None,
                link=find_meeting_link(head),
                attendees=_attendees(head),
                components=ordered,
                calendar=cal,
                start=start,
                end=end,
                is_all_day=all_day,
                has_master=bool(masters),
                is_recurring=bool(overrides)
                or any(head.get(p) is not None for p in ("RRULE", "RDATE")) and bool(masters),
                schedule_agent=agent,
                timezone_problems=[p for p in tz_problems if mark in p or "X-WR-TIMEZONE" in p],
                warnings=warnings,
            )
        )
    return invites


def is_attendee(invite: ParsedInvite, addr: str) -> bool:
    """Whether ``addr`` is listed as an ATTENDEE of the invite (any component)."""
    wanted = address(addr)
    if not wanted:
        return False
    if wanted in invite.attendees:
        return True
    return any(wanted in _attendees(c) for c in invite.components[1:])
