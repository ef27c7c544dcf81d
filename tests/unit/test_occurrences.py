"""expand_occurrences(): corpus series, DST, overrides, cancellations and caps."""

from __future__ import annotations

import dataclasses
import email
import time
from datetime import date, datetime, timedelta
from email import policy

import icalendar
import pytest

from app.domain.calendar_state import StoredEvent, apply_message
from app.domain.occurrences import MAX_OCCURRENCES, Occurrence, expand_occurrences

from tests.unit.ical_helpers import CORPUS, ORG, PAL, UTC, needs_corpus, parse  # noqa: F401


def store(cal: icalendar.Calendar, organizer: str = ORG) -> StoredEvent:
    uid = str(cal.walk("VEVENT")[0]["UID"])
    res = apply_message(None, method="REQUEST", calendar=cal, uid=uid, organizer=organizer, pal_address=PAL)
    assert res.event is not None
    return res.event


def corpus_event(name: str) -> StoredEvent:
    raw = (CORPUS / name).read_bytes()
    if name.endswith(".eml"):
        msg = email.message_from_bytes(raw, policy=policy.default)
        part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
        raw = part.get_content().encode("utf-8")
    return store(parse(raw))


def ics(*events: str) -> icalendar.Calendar:
    return parse("\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//t//EN", "METHOD:REQUEST", *events, "END:VCALENDAR", ""]))


def ev(*props: str, uid: str = "u1") -> str:
    return "\r\n".join(["BEGIN:VEVENT", f"UID:{uid}", "DTSTAMP:20240101T000000Z", "SEQUENCE:0", *props, "END:VEVENT"])


def u(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def starts(occ: list[Occurrence]) -> list[datetime]:
    return [o.start for o in occ]


# --- corpus series ------------------------------------------------------------------


@needs_corpus
def test_case19_google_weekly_no_end_la_keeps_local_time_across_dst() -> None:
    event = corpus_event("google-recurring-weekly-no-end-la.ics")
    # 13:30 PST = 21:30Z; DST starts 2015-03-08, 13:30 PDT = 20:30Z
    assert starts(expand_occurrences(event, u(2015, 2, 28), u(2015, 3, 10))) == [u(2015, 3, 2, 21, 30), u(2015, 3, 9, 20, 30)]
    # DST ends 2015-11-01
    occ = expand_occurrences(event, u(2015, 10, 25), u(2015, 11, 4))
    assert [(o.start, o.end) for o in occ] == [
        (u(2015, 10, 26, 20, 30), u(2015, 10, 26, 21, 30)),
        (u(2015, 11, 2, 21, 30), u(2015, 11, 2, 22, 30)),
    ]
    assert occ[0].recurrence_id == "20151026T203000Z" and occ[0].summary == "Weekly Planning Meeting"


@needs_corpus
def test_unbounded_series_limited_to_window() -> None:
    event = corpus_event("google-recurring-weekly-no-end-la.ics")
    occ = expand_occurrences(event, u(2030, 1, 1), u(2030, 1, 29))
    assert starts(occ) == [u(2030, 1, 7, 21, 30), u(2030, 1, 14, 21, 30), u(2030, 1, 21, 21, 30), u(2030, 1, 28, 21, 30)]


@needs_corpus
def test_in_progress_occurrence_included() -> None:
    event = corpus_event("google-recurring-weekly-no-end-la.ics")
    occ = expand_occurrences(event, u(2015, 3, 2, 22, 0), u(2015, 3, 2, 23, 0))
    assert starts(occ) == [u(2015, 3, 2, 21, 30)]
    assert expand_occurrences(event, u(2015, 3, 2, 22, 30), u(2015, 3, 2, 23, 0)) == []  # ended exactly


@needs_corpus
def test_case21_google_allday_until_date_has_22_occurrences() -> None:
    occ = expand_occurrences(corpus_event("google-recurring-allday-until-date.ics"), u(2014, 8, 1), u(2014, 11, 1))
    days = [10, 13, 16, 17, 20, 23, 24, 27, 30, 31]
    expected = [date(2014, 8, d) for d in days] + [date(2014, 9, d) for d in [3, 6, 7, 10, 13, 14, 17, 20, 21, 24, 27, 28]]
    assert len(occ) == 22
    assert [o.recurrence_id for o in occ] == [d.strftime("%Y%m%d") for d in expected]
    # all-day = 00:00 UTC of the date to 00:00 UTC of the next date
    assert (occ[0].start, occ[0].end) == (u(2014, 8, 10), u(2014, 8, 11))
    assert occ[-1].start == u(2014, 9, 28)


@needs_corpus
def test_case22_exchange_allday_moved_occurrence_replaces_original() -> None:
    occ = expand_occurrences(corpus_event("exchange-allday-moved-occurrence-recurid-datetime.ics"), u(2026, 2, 18), u(2026, 3, 6))
    assert [(o.recurrence_id, o.start) for o in occ] == [
        ("20260219", u(2026, 2, 19)),
        ("20260224", u(2026, 2, 24)),
        ("20260226", u(2026, 2, 27)),  # RECURRENCE-ID 2026-02-26T00:00 Berlin matches the DATE
        ("20260303", u(2026, 3, 3)),
        ("20260305", u(2026, 3, 5)),
    ]


@needs_corpus
def test_case23_override_before_master() -> None:
    occ = expand_occurrences(corpus_event("google-override-before-master.ics"), u(2026, 2, 1), u(2026, 3, 1))
    # America/Denver is MST (UTC-7) in February
    assert [(o.recurrence_id, o.start, o.end, o.summary) for o in occ] == [
        ("20260210T170000Z", u(2026, 2, 10, 17), u(2026, 2, 10, 17, 30), "TEST RECURR 3"),
        ("20260211T170000Z", u(2026, 2, 11, 17, 30), u(2026, 2, 11, 18), "TEST RECURR 3 - MODIFIED"),
        ("20260212T170000Z", u(2026, 2, 12, 17), u(2026, 2, 12, 17, 30), "TEST RECURR 3"),
    ]


@needs_corpus
def test_case24_teams_every_two_days_w_europe() -> None:
    occ = expand_occurrences(corpus_event("teams-recurring-every-2-days-w-europe.ics"), u(2020, 11, 1), u(2020, 12, 31))
    assert starts(occ) == [u(2020, 11, 24, 10), u(2020, 11, 26, 10)]  # 11:00 +01:00
    assert all(o.link is not None and o.link.platform == "teams" for o in occ)


# --- DST ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tzid", "window", "expected"),
    [
        ("America/New_York", (u(2024, 3, 3), u(2024, 3, 19)), [u(2024, 3, 4, 14), u(2024, 3, 11, 13), u(2024, 3, 18, 13)]),
        ("America/New_York", (u(2024, 10, 27), u(2024, 11, 12)), [u(2024, 10, 28, 13), u(2024, 11, 4, 14), u(2024, 11, 11, 14)]),
        ("Europe/Berlin", (u(2024, 3, 24), u(2024, 4, 9)), [u(2024, 3, 25, 8), u(2024, 4, 1, 7), u(2024, 4, 8, 7)]),
        ("Europe/Berlin", (u(2024, 10, 20), u(2024, 11, 5)), [u(2024, 10, 21, 7), u(2024, 10, 28, 8), u(2024, 11, 4, 8)]),
    ],
)
def test_weekly_0900_local_across_dst(tzid: str, window: tuple[datetime, datetime], expected: list[datetime]) -> None:
    event = store(ics(ev(f"DTSTART;TZID={tzid}:20240101T090000", f"DTEND;TZID={tzid}:20240101T093000", "RRULE:FREQ=WEEKLY;BYDAY=MO")))
    occ = expand_occurrences(event, *window)
    assert starts(occ) == expected
    assert all(o.end - o.start == timedelta(minutes=30) for o in occ)


# --- overrides, links, cancellations ------------------------------------------------------


MEET_A = "https://meet.google.com/abc-defg-hij"
MEET_B = "https://meet.google.com/xyz-abcd-xyz"


def test_link_can_change_per_occurrence() -> None:
    event = store(ics(
        ev("DTSTART:20240304T100000Z", "DTEND:20240304T110000Z", "RRULE:FREQ=DAILY;COUNT=3", f"DESCRIPTION:Join {MEET_A}", "SUMMARY:Daily"),
        ev("RECURRENCE-ID:20240305T100000Z", "DTSTART:20240305T100000Z", "DTEND:20240305T110000Z", f"DESCRIPTION:Join {MEET_B}", "SUMMARY:Daily"),
    ))
    occ = expand_occurrences(event, u(2024, 3, 1), u(2024, 3, 10))
    assert [o.link.url if o.link else None for o in occ] == [MEET_A, MEET_B, MEET_A]
    assert all(o.link.platform == "google_meet" for o in occ)


def test_non_recurring_event_keeps_one_id_when_moved() -> None:
    event = store(ics(ev("DTSTART;TZID=Europe/Berlin:20240304T110000", "DTEND;TZID=Europe/Berlin:20240304T120000", "SUMMARY:One-off")))
    occ = expand_occurrences(event, u(2024, 3, 1), u(2024, 3, 10))
    assert [(o.recurrence_id, o.start, o.end, o.summary, o.link) for o in occ] == [
        ("", u(2024, 3, 4, 10), u(2024, 3, 4, 11), "One-off", None)
    ]
    moved = store(ics(ev("DTSTART;TZID=Europe/Berlin:20240305T090000", "DTEND;TZID=Europe/Berlin:20240305T100000", "SUMMARY:One-off")))
    assert [o.recurrence_id for o in expand_occurrences(moved, u(2024, 3, 1), u(2024, 3, 10))] == [""]


def test_window_is_half_open() -> None:
    event = store(ics(ev("DTSTART:20240304T100000Z", "DTEND:20240304T110000Z")))
    assert expand_occurrences(event, u(2024, 3, 4, 9), u(2024, 3, 4, 10)) == []
    assert expand_occurrences(event, u(2024, 3, 4, 11), u(2024, 3, 4, 12)) == []
    assert len(expand_occurrences(event, u(2024, 3, 4, 10, 59), u(2024, 3, 4, 12))) == 1


def test_duration_without_dtend() -> None:
    event = store(ics(ev("DTSTART:20240304T100000Z", "DURATION:PT45M")))
    (occ,) = expand_occurrences(event, u(2024, 3, 1), u(2024, 3, 10))
    assert occ.end == u(2024, 3, 4, 10, 45)


def test_cancelled_components_and_instances_excluded() -> None:
    event = store(ics(
        ev("DTSTART:20240304T100000Z", "DTEND:20240304T110000Z", "RRULE:FREQ=DAILY;COUNT=4"),
        ev("RECURRENCE-ID:20240305T100000Z", "DTSTART:20240305T100000Z", "DTEND:20240305T110000Z", "STATUS:CANCELLED"),
    ))
    assert event.cancelled_instances == {"20240305T100000Z"}
    assert starts(expand_occurrences(event, u(2024, 3, 1), u(2024, 3, 10))) == [u(2024, 3, 4, 10), u(2024, 3, 6, 10), u(2024, 3, 7, 10)]
    # the id set alone is honoured too (e.g. rows written by other code)
    extra = dataclasses.replace(event, cancelled_instances=event.cancelled_instances | {"20240306T100000Z"})
    assert starts(expand_occurrences(extra, u(2024, 3, 1), u(2024, 3, 10))) == [u(2024, 3, 4, 10), u(2024, 3, 7, 10)]


def test_cancelled_event_has_no_occurrences() -> None:
    event = store(ics(ev("DTSTART:20240304T100000Z", "DTEND:20240304T110000Z", "STATUS:CANCELLED")))
    assert event.cancelled
    assert expand_occurrences(event, u(2024, 3, 1), u(2024, 3, 10)) == []


def test_case43_thisandfuture_request_override_has_no_duplicates() -> None:
    event = store(ics(
        ev("DTSTART:20240101T100000Z", "DTEND:20240101T110000Z", "RRULE:FREQ=DAILY;COUNT=5"),
        ev("RECURRENCE-ID;RANGE=THISANDFUTURE:20240103T100000Z", "DTSTART:20240103T120000Z", "DTEND:20240103T130000Z"),
    ))
    occ = expand_occurrences(event, u(2024, 1, 1), u(2024, 1, 10))
    ids = [o.recurrence_id for o in occ]
    assert len(ids) == len(set(ids)) == 5
    assert occ[2].start == u(2024, 1, 3, 12)  # applied to that instance at least


# --- caps ----------------------------------------------------------------------------------


def test_minutely_rule_capped_per_call() -> None:
    event = store(ics(ev("DTSTART:20240304T000000Z", "DURATION:PT1M", "RRULE:FREQ=MINUTELY")))
    t = time.monotonic()
    occ = expand_occurrences(event, u(2024, 3, 4), u(2024, 3, 11))
    assert len(occ) == MAX_OCCURRENCES and occ == sorted(occ, key=lambda o: o.start)
    assert len(expand_occurrences(event, u(2024, 3, 4), u(2024, 3, 11), limit=5)) == 5
    assert time.monotonic() - t < 10


def test_secondly_rule_from_long_ago_does_not_explode() -> None:
    event = store(ics(ev("DTSTART:20200101T000000Z", "DURATION:PT1S", "RRULE:FREQ=SECONDLY")))
    t = time.monotonic()
    occ = expand_occurrences(event, u(2024, 3, 4), u(2024, 3, 5))
    assert time.monotonic() - t < 5
    assert len(occ) <= MAX_OCCURRENCES


def test_dense_rule_with_small_count_still_expands() -> None:
    event = store(ics(ev("DTSTART:20200101T000000Z", "DURATION:PT30M", "RRULE:FREQ=MINUTELY;INTERVAL=60;COUNT=3")))
    assert starts(expand_occurrences(event, u(2019, 12, 31), u(2020, 1, 2))) == [u(2020, 1, 1, 0), u(2020, 1, 1, 1), u(2020, 1, 1, 2)]


def test_hourly_office_hours_since_years_still_expand_quickly() -> None:
    event = store(ics(ev("DTSTART:20150105T090000Z", "DURATION:PT30M", "RRULE:FREQ=HOURLY;BYHOUR=9,10,11;BYDAY=MO,TU,WE,TH,FR")))
    t = time.monotonic()
    occ = expand_occurrences(event, u(2024, 3, 4), u(2024, 3, 5))
    assert starts(occ) == [u(2024, 3, 4, 9), u(2024, 3, 4, 10), u(2024, 3, 4, 11)]
    assert time.monotonic() - t < 5
