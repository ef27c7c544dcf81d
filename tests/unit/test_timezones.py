"""Custom VTIMEZONEs are resolved per calendar, never from another message."""

from __future__ import annotations

from datetime import datetime, timezone

from icalendar.timezone import tzp

from app.domain.calendar_state import StoredEvent
from app.domain.occurrences import expand_occurrences
from app.domain.timezones import parse_ics

UTC = timezone.utc


def custom_zone_event(uid: str, tzid: str, offset: str) -> str:
    """An Outlook-style event whose time zone exists only as this calendar's VTIMEZONE."""
    return "\r\n".join([
        "BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN",
        "BEGIN:VTIMEZONE", f"TZID:{tzid}",
        "BEGIN:STANDARD", "DTSTART:16010101T000000", f"TZOFFSETFROM:{offset}", f"TZOFFSETTO:{offset}",
        "END:STANDARD", "END:VTIMEZONE",
        "BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20261101T000000Z", "SEQUENCE:0",
        f"DTSTART;TZID={tzid}:20261201T100000", f"DTEND;TZID={tzid}:20261201T110000",
        "END:VEVENT", "END:VCALENDAR", "",
    ])


def stored(uid: str, ics: str) -> StoredEvent:
    return StoredEvent(uid=uid, organizer="org@example.com", sequence=0, dtstamp=None, ics=ics, cancelled=False)


def test_two_events_sharing_a_custom_tzid_keep_their_own_offsets() -> None:
    paris = stored("a", custom_zone_event("a", "Customized Time Zone", "+0100"))
    chicago = stored("b", custom_zone_event("b", "Customized Time Zone", "-0600"))
    window = (datetime(2026, 11, 30, tzinfo=UTC), datetime(2026, 12, 3, tzinfo=UTC))

    first = expand_occurrences(paris, *window)
    second = expand_occurrences(chicago, *window)

    assert [o.start for o in first] == [datetime(2026, 12, 1, 9, 0, tzinfo=UTC)]
    assert [o.start for o in second] == [datetime(2026, 12, 1, 16, 0, tzinfo=UTC)]


def test_parsing_leaves_no_custom_zone_behind() -> None:
    for n in range(200):
        cal = parse_ics(custom_zone_event(f"u{n}", f"Zone from a stranger {n}", "+0300"))
        start = cal.walk("VEVENT")[0]["DTSTART"].dt
        assert start.utcoffset().total_seconds() == 3 * 3600
    # Nothing from those messages is left in icalendar's process-wide cache.
    assert tzp.timezone("Zone from a stranger 7") is None
    assert tzp.timezone("Europe/Berlin") is not None


def test_nul_characters_become_replacement_characters() -> None:
    cal = parse_ics(custom_zone_event("u\x00id", "Zone", "+0000").encode())
    assert str(cal.walk("VEVENT")[0]["UID"]) == "u\ufffdid"
