"""Resolve every calendar date-time to a definite instant.

icalendar resolves Olson names and Windows names, and VTIMEZONEs with other
names, but it caches custom VTIMEZONEs process-wide by TZID and never
replaces them: a second message defining "Customized Time Zone" differently
would silently get the first one's offsets. So we re-resolve every value that
carries a TZID against *this* calendar's VTIMEZONEs.

Resolution order for a TZID:
1. an IANA (Olson) name known to zoneinfo;
2. a VTIMEZONE with that TZID in the same calendar;
3. a Windows zone id ("Romance Standard Time", also with a " 1" suffix);
4. an Outlook display name ("(UTC-05:00) Eastern Time (US & Canada)"), via a
   table or a city match whose standard offset agrees with the prefix.
Anything else is reported as a problem and the value is left floating, never
silently treated as UTC.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import date, datetime, timedelta, timezone, tzinfo
from functools import lru_cache

import icalendar
import x_wr_timezone
from icalendar.prop import vBroken
from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

UTC = timezone.utc
DATE_PROPS = ("DTSTART", "DTEND", "DUE", "RECURRENCE-ID", "EXDATE", "RDATE")
_UTC_NAMES = {"utc", "gmt", "z", "etc/utc", "tzone://microsoft/utc", "coordinated universal time"}
_PREFIX_RE = re.compile(r"^\((?:UTC|GMT)(?:([+-])(\d{1,2}):?(\d{2}))?\)\s*", re.IGNORECASE)
_SUFFIX_RE = re.compile(r"\s+\d{1,3}$")

# Outlook display names (text after the "(UTC+hh:mm) " prefix), lower-case.
_DISPLAY_NAMES = {
    "eastern time (us & canada)": "America/New_York",
    "central time (us & canada)": "America/Chicago",
    "mountain time (us & canada)": "America/Denver",
    "pacific time (us & canada)": "America/Los_Angeles",
    "alaska": "America/Anchorage",
    "hawaii": "Pacific/Honolulu",
    "arizona": "America/Phoenix",
    "atlantic time (canada)": "America/Halifax",
    "newfoundland": "America/St_Johns",
    "saskatchewan": "America/Regina",
    "indiana (east)": "America/Indiana/Indianapolis",
    "guadalajara, mexico city, monterrey": "America/Mexico_City",
    "bogota, lima, quito, rio branco": "America/Bogota",
    "bogota, lima, quito": "America/Bogota",
    "brasilia": "America/Sao_Paulo",
    "city of buenos aires": "America/Argentina/Buenos_Aires",
    "buenos aires": "America/Argentina/Buenos_Aires",
    "dublin, edinburgh, lisbon, london": "Europe/London",
    "greenwich mean time : dublin, edinburgh, lisbon, london": "Europe/London",
    "monrovia, reykjavik": "Atlantic/Reykjavik",
    "amsterdam, berlin, bern, rome, stockholm, vienna": "Europe/Berlin",
    "brussels, copenhagen, madrid, paris": "Europe/Paris",
    "belgrade, bratislava, budapest, ljubljana, prague": "Europe/Budapest",
    "sarajevo, skopje, warsaw, zagreb": "Europe/Warsaw",
    "west central africa": "Africa/Lagos",
    "athens, bucharest": "Europe/Bucharest",
    "athens, bucharest, istanbul": "Europe/Bucharest",
    "helsinki, kyiv, riga, sofia, tallinn, vilnius": "Europe/Helsinki",
    "helsinki, kiev, riga, sofia, tallinn, vilnius": "Europe/Helsinki",
    "jerusalem": "Asia/Jerusalem",
    "cairo": "Africa/Cairo",
    "harare, pretoria": "Africa/Johannesburg",
    "istanbul": "Europe/Istanbul",
    "moscow, st. petersburg": "Europe/Moscow",
    "moscow, st. petersburg, volgograd": "Europe/Moscow",
    "nairobi": "Africa/Nairobi",
    "abu dhabi, muscat": "Asia/Dubai",
    "tehran": "Asia/Tehran",
    "islamabad, karachi": "Asia/Karachi",
    "chennai, kolkata, mumbai, new delhi": "Asia/Kolkata",
    "kathmandu": "Asia/Kathmandu",
    "dhaka": "Asia/Dhaka",
    "bangkok, hanoi, jakarta": "Asia/Bangkok",
    "beijing, chongqing, hong kong, urumqi": "Asia/Shanghai",
    "kuala lumpur, singapore": "Asia/Singapore",
    "perth": "Australia/Perth",
    "taipei": "Asia/Taipei",
    "osaka, sapporo, tokyo": "Asia/Tokyo",
    "seoul": "Asia/Seoul",
    "adelaide": "Australia/Adelaide",
    "darwin": "Australia/Darwin",
    "brisbane": "Australia/Brisbane",
    "canberra, melbourne, sydney": "Australia/Sydney",
    "hobart": "Australia/Hobart",
    "auckland, wellington": "Pacific/Auckland",
}


class UnresolvedTime(ValueError):
    """A floating or unresolvable date-time was asked for as an instant."""


def parse_ics(data: str | bytes) -> icalendar.Calendar:
    """Parse an iCalendar object, resolving custom TZIDs against its own VTIMEZONEs only.

    icalendar caches every custom VTIMEZONE process-wide, first definition wins and
    nothing is evicted: a stored event re-read after a stranger's message reused its
    TZID got the stranger's offsets, and unique TZIDs grew the process by ~2 KB each.
    Resetting the provider (about 2 µs) empties that cache. NUL characters become U+FFFD,
    because nothing read from the calendar could be stored in PostgreSQL otherwise.
    """
    data = data.replace(b"\x00", "\ufffd".encode()) if isinstance(data, bytes) else data.replace("\x00", "\ufffd")
    icalendar.use_zoneinfo()
    try:
        return icalendar.Calendar.from_ical(data)
    finally:
        icalendar.use_zoneinfo()


@lru_cache(maxsize=1)
def _city_index() -> dict[str, str]:
    """'sydney' -> 'Australia/Sydney' for every IANA zone's last component."""
    index: dict[str, str] = {}
    for name in sorted(zoneinfo.available_timezones()):
        if "/" in name and not name.startswith(("Etc/", "SystemV/", "US/")):
            index.setdefault(name.rsplit("/", 1)[1].replace("_", " ").lower(), name)
    return index


@lru_cache(maxsize=4096)
def _iana(name: str) -> tzinfo | None:
    if not name or len(name) > 64 or name.startswith(("/", ".")) or ".." in name:
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _standard_offset(tz: tzinfo, year: int) -> timedelta | None:
    offs = [datetime(year, m, 15, 12, tzinfo=tz).utcoffset() for m in (1, 7)]
    # DST only ever adds time, so the smaller offset is the standard one.
    return min((o for o in offs if o is not None), default=None)


def _from_display_name(tzid: str, year: int) -> tzinfo | None:
    m = _PREFIX_RE.match(tzid)
    rest = tzid[m.end():].strip().lower() if m else tzid.strip().lower()
    expected: timedelta | None = None
    if m and m.group(2):
        sign = -1 if m.group(1) == "-" else 1
        expected = sign * timedelta(hours=int(m.group(2)), minutes=int(m.group(3)))
    elif m:
        expected = timedelta(0)
    if rest in _UTC_NAMES:
        return UTC
    candidates = []
    if rest in _DISPLAY_NAMES:
        candidates.append(_DISPLAY_NAMES[rest])
    # Unknown display names usually list cities: "Canberra, Melbourne, Sydney".
    candidates += [_city_index()[c.strip()] for c in rest.split(",") if c.strip() in _city_index()]
    for name in candidates:
        tz = _iana(name)
        # Only trust a guess whose standard offset matches the "(UTC+hh:mm)" prefix.
        if tz is not None and (expected is None or _standard_offset(tz, year) == expected):
            if expected is None and rest not in _DISPLAY_NAMES:
                continue  # a bare city list without an offset is too weak a hint
            return tz
    return None


def resolve_tzid(
    tzid: str, vtimezones: dict[str, icalendar.Timezone] | None = None, year: int = 2000
) -> tzinfo | None:
    """The tzinfo a TZID stands for, or None if it can't be determined."""
    tzid = tzid.strip().strip('"')
    if tzid.lower() in _UTC_NAMES:
        return UTC
    tz = _iana(tzid.strip("/"))
    if tz is not None:
        return tz
    comp = (vtimezones or {}).get(tzid)
    if comp is not None:
        try:
            # lookup_tzid=False: build from this message, bypass icalendar's global cache.
            return comp.to_tz(lookup_tzid=False)
        except Exception:  # noqa: BLE001 - a broken VTIMEZONE falls through to name mapping
            pass
    if tzid.startswith("/"):
        # RFC 5545 "globally unique" ids such as /freeassociation.sourceforge.net/Europe/Berlin.
        parts = tzid.strip("/").split("/")
        for i in range(1, len(parts)):
            if (tz := _iana("/".join(parts[i:]))) is not None:
                return tz
    for name in (tzid, _SUFFIX_RE.sub("", tzid)):
        if name in WINDOWS_TO_OLSON and (tz := _iana(WINDOWS_TO_OLSON[name])) is not None:
            return tz
    return _from_display_name(tzid, year)


def to_utc(value: date | datetime, floating_tz: tzinfo | None = None) -> datetime:
    """The UTC instant of a DATE or DATE-TIME value.

    A DATE becomes midnight in ``floating_tz`` (UTC when not given: all-day
    events have no instant, the caller chooses the zone). A naive DATE-TIME
    needs ``floating_tz``, otherwise UnresolvedTime is raised.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            if floating_tz is None:
                raise UnresolvedTime(f"floating time {value.isoformat()} has no time zone")
            value = value.replace(tzinfo=floating_tz)
        return value.astimezone(UTC)
    return datetime(value.year, value.month, value.day, tzinfo=floating_tz or UTC).astimezone(UTC)


def calendar_timezone(cal: icalendar.Calendar) -> tzinfo | None:
    """The calendar-wide zone from X-WR-TIMEZONE, if valid."""
    name = cal.get("X-WR-TIMEZONE")
    return _iana(str(name).strip()) if name is not None else None


def value_of(prop: object) -> date | datetime | timedelta | tuple | None:
    """``prop.dt``, or None for a missing or unparseable (vBroken) property."""
    if prop is None or isinstance(prop, vBroken):
        return None
    try:
        return prop.dt  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - icalendar raises BrokenCalendarProperty etc.
        return None


def _fix_value(v, vtz: dict, memo: dict, where: str, problems: list[str]) -> None:
    if isinstance(v, vBroken):
        problems.append(f"{where}: unparseable value")
        return
    dt = value_of(v)
    if not isinstance(dt, datetime):
        return  # DATE, PERIOD or DURATION: no zone involved
    tzid = v.params.get("TZID") if hasattr(v, "params") else None
    if tzid:
        tzid = str(tzid)
        if tzid not in memo:
            memo[tzid] = resolve_tzid(tzid, vtz, dt.year)
        tz = memo[tzid]
        if tz is None:
            problems.append(f"{where}: unknown TZID {tzid!r}")
            v.dt = dt.replace(tzinfo=None)
        else:
            v.dt = dt.replace(tzinfo=tz)
    elif dt.tzinfo is None:
        problems.append(f"{where}: floating time {dt.isoformat()} without a time zone")


def normalise_calendar(cal: icalendar.Calendar) -> tuple[icalendar.Calendar, list[str]]:
    """Apply X-WR-TIMEZONE and re-resolve every TZID in place.

    Returns the calendar to use (it may be a new object) and the list of
    problems (unknown TZIDs, floating times); an empty list means every
    DATE-TIME is a definite instant.
    """
    problems: list[str] = []
    if cal.get("X-WR-TIMEZONE") is not None:
        if calendar_timezone(cal) is None:
            problems.append(f"unknown X-WR-TIMEZONE {str(cal.get('X-WR-TIMEZONE'))!r}")
        else:
            # Google feeds: UTC/floating times are meant in the calendar's zone.
            cal = x_wr_timezone.to_standard(cal)
    vtz = {str(t.get("TZID", "")).strip('"'): t for t in cal.walk("VTIMEZONE")}
    memo: dict[str, tzinfo | None] = {}
    for comp in cal.subcomponents:
        if comp.name == "VTIMEZONE":
            continue
        for sub in comp.walk():
            where = f"{sub.name} {str(comp.get('UID', ''))[:80]}".strip()
            for name in DATE_PROPS:
                prop = sub.get(name)
                for item in prop if isinstance(prop, list) else [prop] if prop is not None else []:
                    dts = None if isinstance(item, vBroken) else getattr(item, "dts", None)
                    for v in dts or [item]:
                        _fix_value(v, vtz, memo, f"{where} {name}", problems)
    return cal, list(dict.fromkeys(problems))
