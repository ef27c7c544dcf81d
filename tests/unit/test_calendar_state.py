"""apply_message(): ordering, cancellation and recurrence rules (CONFORMANCE.md cases)."""

from __future__ import annotations

import email
from datetime import datetime
from email import policy

import icalendar
import pytest

from app.domain.calendar_state import (
    ApplyResult,
    Outcome,
    StoredEvent,
    apply_message,
    rid_key,
)
from app.domain.occurrences import expand_occurrences

from tests.unit.ical_helpers import CORPUS, ORG, PAL, UTC, needs_corpus, parse  # noqa: F401


def corpus(name: str) -> icalendar.Calendar:
    raw = (CORPUS / name).read_bytes()
    if name.endswith(".eml"):
        msg = email.message_from_bytes(raw, policy=policy.default)
        part = next(p for p in msg.walk() if p.get_content_type() == "text/calendar")
        raw = part.get_content().encode("utf-8")
    return parse(raw)


def uid_of(cal: icalendar.Calendar) -> str:
    return str(cal.walk("VEVENT")[0]["UID"])


def vevent(
    *,
    uid: str = "u1",
    seq: int = 0,
    stamp: str = "20240101T000000Z",
    start: str = "20240304T100000Z",
    end: str | None = "20240304T110000Z",
    rrule: str | None = None,
    exdate: str | None = None,
    rid: str | None = None,
    status: str | None = "CONFIRMED",
    summary: str = "Standup",
    location: str | None = None,
    description: str | None = None,
    attendees: tuple[str, ...] = (PAL, "other@example.com"),
    organizer: str = ORG,
) -> str:
    lines = ["BEGIN:VEVENT", f"UID:{uid}", f"SEQUENCE:{seq}", f"DTSTAMP:{stamp}"]
    lines.append(f"DTSTART{start}" if start.startswith(";") else f"DTSTART:{start}")
    if end:
        lines.append(f"DTEND{end}" if end.startswith(";") else f"DTEND:{end}")
    if rid:
        lines.append(f"RECURRENCE-ID{rid}" if rid.startswith(";") else f"RECURRENCE-ID:{rid}")
    if rrule:
        lines.append(f"RRULE:{rrule}")
    if exdate:
        lines.append(f"EXDATE:{exdate}")
    if status:
        lines.append(f"STATUS:{status}")
    lines.append(f"SUMMARY:{summary}")
    if location:
        lines.append(f"LOCATION:{location}")
    if description:
        lines.append(f"DESCRIPTION:{description}")
    lines.append(f"ORGANIZER:mailto:{organizer}")
    lines += [f"ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:{a}" for a in attendees]
    lines.append("END:VEVENT")
    return "\r\n".join(lines)


def vcal(method: str, *events: str) -> icalendar.Calendar:
    body = "\r\n".join(["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN", f"METHOD:{method}", *events, "END:VCALENDAR", ""])
    return parse(body)


def apply(stored: StoredEvent | None, method: str, cal: icalendar.Calendar, *, organizer: str = ORG, uid: str | None = None, pal: str = PAL) -> ApplyResult:
    return apply_message(stored, method=method, calendar=cal, uid=uid or uid_of(cal), organizer=organizer, pal_address=pal)


def chain(*steps: tuple[str, icalendar.Calendar], organizer: str = ORG, pal: str = PAL) -> tuple[StoredEvent | None, list[ApplyResult]]:
    """Apply messages in order, persisting each new state like the service would."""
    stored, results = None, []
    for method, cal in steps:
        res = apply(stored, method, cal, organizer=organizer, pal=pal)
        results.append(res)
        if res.event is not None:
            stored = res.event
    return stored, results


def starts(event: StoredEvent, a: datetime, b: datetime) -> list[datetime]:
    return [o.start for o in expand_occurrences(event, a, b)]


def dt(s: str) -> datetime:
    return datetime.strptime(s, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


WEEKLY = "FREQ=WEEKLY;COUNT=6"  # Mondays 2024-03-04 .. 2024-04-08, 10:00Z
WIN = (dt("20240301T000000Z"), dt("20240501T000000Z"))


# --- basics ----------------------------------------------------------------------


def test_rid_key_compares_instants_not_strings() -> None:
    berlin = parse("BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\nUID:x\r\nRECURRENCE-ID;TZID=Europe/Berlin:20240304T110000\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    rid = berlin.walk("VEVENT")[0]["RECURRENCE-ID"].dt
    assert rid_key(rid, all_day=False) == "20240304T100000Z"
    assert rid_key(dt("20240304T100000Z"), all_day=False) == "20240304T100000Z"
    # all-day series: a local-midnight DATE-TIME (Exchange) is its wall-clock date
    assert rid_key(datetime(2026, 2, 26, tzinfo=UTC), all_day=True) == "20260226"


def test_create_then_stored_fields() -> None:
    res = apply(None, "REQUEST", vcal("REQUEST", vevent(seq=3, stamp="20240102T030405Z")))
    assert res.outcome is Outcome.CREATED and res.significant
    ev = res.event
    assert ev is not None and ev.uid == "u1" and ev.organizer == ORG
    assert ev.sequence == 3 and ev.dtstamp == dt("20240102T030405Z")
    assert not ev.cancelled and ev.cancelled_instances == frozenset()
    assert "BEGIN:VCALENDAR" in ev.ics


@pytest.mark.parametrize("method", ["REPLY", "PUBLISH", "COUNTER", "REFRESH", "ADD", ""])
def test_case8_unsupported_methods_ignored(method: str) -> None:
    res = apply(None, method, vcal("REQUEST", vevent()))
    assert res.outcome is Outcome.IGNORED and res.event is None


def test_no_vevent_for_uid_ignored() -> None:
    res = apply(None, "REQUEST", vcal("REQUEST", vevent()), uid="other")
    assert res.outcome is Outcome.IGNORED


def test_reschedule_is_significant() -> None:
    stored, (_, res) = chain(
        ("REQUEST", vcal("REQUEST", vevent())),
        ("REQUEST", vcal("REQUEST", vevent(seq=1, start="20240305T100000Z", end="20240305T110000Z"))),
    )
    assert res.outcome is Outcome.UPDATED and res.significant
    assert starts(stored, *WIN) == [dt("20240305T100000Z")]


def test_title_only_change_not_significant() -> None:
    _, (_, res) = chain(
        ("REQUEST", vcal("REQUEST", vevent())),
        ("REQUEST", vcal("REQUEST", vevent(stamp="20240102T000000Z", summary="Renamed"))),
    )
    assert res.outcome is Outcome.UPDATED and not res.significant
    assert "Renamed" in res.event.ics


def test_link_change_is_significant() -> None:
    a = "Join https://meet.google.com/abc-defg-hij"
    b = "Join https://meet.google.com/xyz-wxyz-xyz"
    _, (_, same, changed) = chain(
        ("REQUEST", vcal("REQUEST", vevent(description=a))),
        ("REQUEST", vcal("REQUEST", vevent(stamp="20240102T000000Z", description=a + " (agenda)"))),
        ("REQUEST", vcal("REQUEST", vevent(stamp="20240103T000000Z", description=b))),
    )
    assert same.outcome is Outcome.UPDATED and not same.significant
    assert changed.outcome is Outcome.UPDATED and changed.significant


def test_stale_replay_is_stale() -> None:
    v1 = vcal("REQUEST", vevent(seq=1))
    _, (_, _, replay) = chain(
        ("REQUEST", v1),
        ("REQUEST", vcal("REQUEST", vevent(seq=2, start="20240305T100000Z", end="20240305T110000Z"))),
        ("REQUEST", v1),
    )
    assert replay.outcome is Outcome.STALE and replay.event is None


# --- updates and ordering ------------------------------------------------------------


@needs_corpus
def test_case26_google_same_sequence_newer_dtstamp_is_minor_update() -> None:
    stored, (created, res) = chain(
        ("REQUEST", corpus("google-request-v1.ics")),
        ("REQUEST", corpus("google-request-v2-location-change-same-seq.ics")),
        organizer="karim@nilas.com",
    )
    assert created.outcome is Outcome.CREATED
    assert res.outcome is Outcome.UPDATED and not res.significant
    assert "Zenith" in stored.ics and stored.sequence == 0


@needs_corpus
def test_case27_google_v2_then_v1_is_stale() -> None:
    _, (_, res) = chain(
        ("REQUEST", corpus("google-request-v2-location-change-same-seq.ics")),
        ("REQUEST", corpus("google-request-v1.ics")),
        organizer="karim@nilas.com",
    )
    assert res.outcome is Outcome.STALE and res.reason == "older SEQUENCE/DTSTAMP"


@needs_corpus
def test_case28_tb_minor_update_same_sequence() -> None:
    stored, (_, res) = chain(
        ("REQUEST", corpus("tb-scenario-single-event.eml")),
        ("REQUEST", corpus("tb-scenario-update-minor-same-seq.eml")),
        organizer="sender@example.com",
    )
    assert res.outcome is Outcome.UPDATED and not res.significant
    assert "Updated Event" in stored.ics and "Updated location" in stored.ics


@needs_corpus
def test_case29_tb_major_update_moves_time() -> None:
    stored, (_, res) = chain(
        ("REQUEST", corpus("tb-scenario-single-event.eml")),
        ("REQUEST", corpus("tb-scenario-update-major-seq2.eml")),
        organizer="sender@example.com",
    )
    assert res.outcome is Outcome.UPDATED and res.significant
    assert stored.sequence == 2
    occ = expand_occurrences(stored, dt("20220315T000000Z"), dt("20220318T000000Z"))
    assert [o.start for o in occ] == [dt("20220316T050000Z")]


@needs_corpus
def test_case30_same_message_twice_is_duplicate() -> None:
    cal = corpus("tb-scenario-single-event.eml")
    stored, (_, res) = chain(("REQUEST", cal), ("REQUEST", cal), organizer="sender@example.com")
    assert res.outcome is Outcome.STALE and res.reason == "duplicate" and res.event is None


@needs_corpus
def test_case31_outlook_mac_cancel_with_equal_sequence_accepted() -> None:
    stored, results = chain(
        ("REQUEST", corpus("outlook-mac-request.eml")),
        ("REQUEST", corpus("outlook-mac-update-seq1.eml")),
        ("CANCEL", corpus("outlook-mac-cancel-seq1.eml")),
        organizer="admin@willow.vmw",
    )
    assert [r.outcome for r in results] == [Outcome.CREATED, Outcome.UPDATED, Outcome.CANCELLED]
    assert results[1].significant
    assert stored.cancelled and stored.sequence == 1
    assert expand_occurrences(stored, dt("20120501T000000Z"), dt("20120701T000000Z")) == []


def test_case32_cancel_with_lower_sequence_ignored() -> None:
    stored, (_, res) = chain(
        ("REQUEST", vcal("REQUEST", vevent(seq=3))),
        ("CANCEL", vcal("CANCEL", vevent(seq=2, stamp="20240301T000000Z", status="CANCELLED"))),
    )
    assert res.outcome is Outcome.STALE and not stored.cancelled


@needs_corpus
def test_case33_google_cancel_not_revived_by_sequence_le_1() -> None:
    org = "inboxapptest.french@gmail.com"
    request = corpus("google-request-before-cancel.ics")
    stored, results = chain(("REQUEST", request), ("CANCEL", corpus("google-cancel-whole-event.ics")), organizer=org)
    assert results[1].outcome is Outcome.CANCELLED and stored.cancelled
    assert apply(stored, "REQUEST", request, organizer=org).outcome is Outcome.STALE
    uid = uid_of(request)
    same_seq_later = vcal("REQUEST", vevent(uid=uid, seq=1, stamp="20150331T000000Z", start="20150401T140000Z", end="20150401T150000Z", organizer=org))
    assert apply(stored, "REQUEST", same_seq_later, organizer=org).outcome is Outcome.STALE
    revived = apply(stored, "REQUEST", vcal("REQUEST", vevent(uid=uid, seq=2, stamp="20150331T000000Z", start="20150401T140000Z", end="20150401T150000Z", organizer=org)), organizer=org)
    assert revived.outcome is Outcome.UPDATED and revived.significant and not revived.event.cancelled


def test_case34_cancel_for_unknown_uid_ignored() -> None:
    res = apply(None, "CANCEL", vcal("CANCEL", vevent(status="CANCELLED")))
    assert res.outcome is Outcome.IGNORED and res.event is None


@needs_corpus
def test_case35_icloud_cancel_with_changed_organizer_uri() -> None:
    # Upstream resolves 2_addr@imip.me.com (EMAIL=invalid@example.com) and the
    # CANCEL's mailto:invalid@example.com to the same address.
    stored, results = chain(
        ("REQUEST", corpus("icloud-request-before-cancel.ics")),
        ("CANCEL", corpus("icloud-cancel.ics")),
        organizer="invalid@example.com",
        pal="karim@nilas.com",
    )
    assert [r.outcome for r in results] == [Outcome.CREATED, Outcome.CANCELLED]
    assert stored.cancelled


@needs_corpus
def test_case36_bogus_huge_sequence_is_numeric() -> None:
    cal = corpus("google-bogus-huge-sequence.ics")
    stored = apply(None, "REQUEST", cal, organizer="test2@example.com").event
    assert stored.sequence == 1407317367304
    uid = uid_of(cal)
    lower = vcal("REQUEST", vevent(uid=uid, seq=5, stamp="20160101T000000Z", organizer="test2@example.com"))
    higher = vcal("REQUEST", vevent(uid=uid, seq=1407317367305, stamp="20150101T000000Z", organizer="test2@example.com"))
    assert apply(stored, "REQUEST", lower, organizer="test2@example.com").outcome is Outcome.STALE
    res = apply(stored, "REQUEST", higher, organizer="test2@example.com")
    assert res.outcome is Outcome.UPDATED and res.event.sequence == 1407317367305


def test_cancelling_one_instance_of_a_series_with_a_huge_sequence() -> None:
    # Exchange sends SEQUENCE values beyond 32 bits, which icalendar will not write as integers.
    huge = 1407317367304
    series = vcal("REQUEST", vevent(uid="u-huge", seq=huge, start="20250303T100000Z", end="20250303T103000Z",
                                    rrule="FREQ=DAILY;COUNT=3"))
    stored = apply(None, "REQUEST", series).event
    cancel = vcal("CANCEL", vevent(uid="u-huge", seq=huge, stamp="20250102T000000Z", rid="20250304T100000Z",
                                   start="20250304T100000Z", end=None, status="CANCELLED"))
    res = apply(stored, "CANCEL", cancel)
    assert res.outcome is Outcome.INSTANCES_CANCELLED and res.event.sequence == huge
    starts = [o.start.day for o in expand_occurrences(res.event, datetime(2025, 3, 1, tzinfo=UTC),
                                                      datetime(2025, 3, 10, tzinfo=UTC))]
    assert starts == [3, 5]


@pytest.mark.parametrize("other", ["mallory@evil.example", "someone-else@example.com"])
def test_case37_organizer_change_is_spoof(other: str) -> None:
    stored = apply(None, "REQUEST", vcal("REQUEST", vevent())).event
    newer = vcal("REQUEST", vevent(seq=5, organizer=other))
    res = apply(stored, "REQUEST", newer, organizer=other)
    assert res.outcome is Outcome.SPOOF and res.event is None
    assert apply(stored, "CANCEL", vcal("CANCEL", vevent(seq=5, status="CANCELLED")), organizer=other).outcome is Outcome.SPOOF
    # case and "mailto:" differences are not a change
    assert apply(stored, "REQUEST", newer, organizer="MAILTO:Boss@Example.com").outcome is Outcome.UPDATED


@needs_corpus
def test_case25_two_masters_same_uid_keeps_first() -> None:
    cal = corpus("icloud-two-vevents-same-uid-no-recurrence-id.ics")
    res = apply(None, "REQUEST", cal, organizer="benbitdiddle@icloud.com")
    assert res.outcome is Outcome.CREATED and res.warnings
    assert res.event.ics.count("BEGIN:VEVENT") == 1
    assert "An all-day meeting about meetings" in res.event.ics


# --- recurring exceptions and cancellations ----------------------------------------------


@needs_corpus
def test_case38_exception_major_moves_only_that_instance() -> None:
    stored, (_, res) = chain(
        ("REQUEST", corpus("tb-scenario-repeat-event.eml")),
        ("REQUEST", corpus("tb-scenario-exception-major.eml")),
        organizer="sender@example.com",
    )
    assert res.outcome is Outcome.UPDATED and res.significant
    occ = expand_occurrences(stored, dt("20220315T000000Z"), dt("20220320T000000Z"))
    assert [(o.recurrence_id, o.start) for o in occ] == [
        ("20220316T110000Z", dt("20220316T110000Z")),
        ("20220317T110000Z", dt("20220317T050000Z")),
        ("20220318T110000Z", dt("20220318T110000Z")),
    ]
    assert stored.sequence == 0  # the master's SEQUENCE is untouched


@needs_corpus
def test_case39_exception_minor_applies_to_one_instance() -> None:
    stored, (_, res) = chain(
        ("REQUEST", corpus("tb-scenario-repeat-event.eml")),
        ("REQUEST", corpus("tb-scenario-exception-minor.eml")),
        organizer="sender@example.com",
    )
    assert res.outcome is Outcome.UPDATED and not res.significant
    occ = expand_occurrences(stored, dt("20220315T000000Z"), dt("20220320T000000Z"))
    assert [o.summary for o in occ] == ["Repeat Event", "Exception title", "Repeat Event"]
    assert [o.start.hour for o in occ] == [11, 11, 11]


def _repeat_cancel(seq: int = 1, rid: str = "20220317T110000Z") -> icalendar.Calendar:
    return vcal("CANCEL", vevent(uid="02e79b96", seq=seq, stamp="20220317T000000Z", rid=rid, start=rid, end=None, status="CANCELLED", organizer="sender@example.com"))


@needs_corpus
def test_case40_instance_cancel_survives_full_request() -> None:
    org = "sender@example.com"
    stored, (_, res) = chain(("REQUEST", corpus("tb-scenario-repeat-event.eml")), ("CANCEL", _repeat_cancel()), organizer=org)
    assert res.outcome is Outcome.INSTANCES_CANCELLED and res.instances == {"20220317T110000Z"}
    assert stored.cancelled_instances == {"20220317T110000Z"} and not stored.cancelled
    win = (dt("20220315T000000Z"), dt("20220320T000000Z"))
    assert starts(stored, *win) == [dt("20220316T110000Z"), dt("20220318T110000Z")]

    full = vcal("REQUEST", vevent(uid="02e79b96", seq=1, stamp="20220318T000000Z", start="20220316T110000Z", end="20220316T113000Z", rrule="FREQ=DAILY;COUNT=3", summary="Renamed", organizer=org))
    res = apply(stored, "REQUEST", full, organizer=org)
    assert res.outcome is Outcome.UPDATED
    assert starts(res.event, *win) == [dt("20220316T110000Z"), dt("20220318T110000Z")]
    assert res.event.cancelled_instances == {"20220317T110000Z"}

    # only an explicit override with a strictly higher SEQUENCE revives it
    def override(seq: int) -> icalendar.Calendar:
        return vcal("REQUEST", vevent(uid="02e79b96", seq=seq, stamp="20220319T000000Z", rid="20220317T110000Z", start="20220317T120000Z", end="20220317T123000Z", organizer=org))

    assert apply(res.event, "REQUEST", override(1), organizer=org).outcome is Outcome.STALE
    revived = apply(res.event, "REQUEST", override(2), organizer=org)
    assert revived.outcome is Outcome.UPDATED and revived.significant
    assert starts(revived.event, *win) == [dt("20220316T110000Z"), dt("20220317T120000Z"), dt("20220318T110000Z")]
    assert revived.event.cancelled_instances == frozenset()


@needs_corpus
def test_case40_instance_cancel_in_other_tz_form_matches() -> None:
    org = "sender@example.com"
    stored, _ = chain(("REQUEST", corpus("tb-scenario-repeat-event.eml")), organizer=org)
    res = apply(stored, "CANCEL", _repeat_cancel(rid=";TZID=Europe/Berlin:20220317T120000"), organizer=org)
    assert res.instances == {"20220317T110000Z"}
    assert len(expand_occurrences(res.event, dt("20220315T000000Z"), dt("20220320T000000Z"))) == 2
    assert apply(res.event, "CANCEL", _repeat_cancel(), organizer=org).outcome is Outcome.STALE


@needs_corpus
def test_case41_cancel_without_dtstart_cancels_series() -> None:
    stored, (_, res) = chain(
        ("REQUEST", corpus("tb-scenario-repeat-event.eml")),
        ("CANCEL", corpus("tb-scenario-cancel-repeat-event-no-dtstart.eml")),
        organizer="sender@example.com",
    )
    assert res.outcome is Outcome.CANCELLED and stored.cancelled
    assert expand_occurrences(stored, dt("20220315T000000Z"), dt("20220320T000000Z")) == []


def test_case42_google_series_split() -> None:
    base = "abc123@google.com"
    new_uid = "abc123_R20240325T100000@google.com"
    old, _ = chain(("REQUEST", vcal("REQUEST", vevent(uid=base, rrule="FREQ=WEEKLY"))))
    cut = apply(old, "REQUEST", vcal("REQUEST", vevent(uid=base, seq=1, stamp="20240301T000000Z", rrule="FREQ=WEEKLY;UNTIL=20240324T235959Z")))
    assert cut.outcome is Outcome.UPDATED and cut.significant
    split = apply(None, "REQUEST", vcal("REQUEST", vevent(uid=new_uid, stamp="20240301T000000Z", start="20240325T150000Z", end="20240325T160000Z", rrule="FREQ=WEEKLY")), uid=new_uid)
    assert split.outcome is Outcome.CREATED
    occ = expand_occurrences(cut.event, *WIN) + expand_occurrences(split.event, *WIN)
    assert sorted(o.start for o in occ) == [
        dt("20240304T100000Z"), dt("20240311T100000Z"), dt("20240318T100000Z"),
        dt("20240325T150000Z"), dt("20240401T150000Z"), dt("20240408T150000Z"),
        dt("20240415T150000Z"), dt("20240422T150000Z"), dt("20240429T150000Z"),
    ]


def test_case43_thisandfuture_cancel_cancels_rest_of_series() -> None:
    stored, (_, res) = chain(
        ("REQUEST", vcal("REQUEST", vevent(rrule=WEEKLY))),
        ("CANCEL", vcal("CANCEL", vevent(seq=1, stamp="20240301T000000Z", rid=";RANGE=THISANDFUTURE:20240318T100000Z", start="20240318T100000Z", status="CANCELLED"))),
    )
    assert res.outcome is Outcome.INSTANCES_CANCELLED and not stored.cancelled
    assert starts(stored, *WIN) == [dt("20240304T100000Z"), dt("20240311T100000Z")]


def test_weekly_series_with_one_moved_and_one_cancelled() -> None:
    stored, results = chain(
        ("REQUEST", vcal("REQUEST", vevent(rrule=WEEKLY))),
        ("REQUEST", vcal("REQUEST", vevent(seq=1, stamp="20240302T000000Z", rid="20240311T100000Z", start="20240312T140000Z", end="20240312T150000Z"))),
        ("CANCEL", vcal("CANCEL", vevent(seq=1, stamp="20240303T000000Z", rid="20240325T100000Z", start="20240325T100000Z", status="CANCELLED"))),
    )
    assert [r.outcome for r in results] == [Outcome.CREATED, Outcome.UPDATED, Outcome.INSTANCES_CANCELLED]
    occ = expand_occurrences(stored, *WIN)
    assert [(o.recurrence_id, o.start) for o in occ] == [
        ("20240304T100000Z", dt("20240304T100000Z")),
        ("20240311T100000Z", dt("20240312T140000Z")),
        ("20240318T100000Z", dt("20240318T100000Z")),
        ("20240401T100000Z", dt("20240401T100000Z")),
        ("20240408T100000Z", dt("20240408T100000Z")),
    ]


def test_override_older_than_stored_override_is_stale() -> None:
    stored, results = chain(
        ("REQUEST", vcal("REQUEST", vevent(rrule=WEEKLY))),
        ("REQUEST", vcal("REQUEST", vevent(seq=2, stamp="20240302T000000Z", rid="20240311T100000Z", start="20240312T140000Z", end="20240312T150000Z"))),
        ("REQUEST", vcal("REQUEST", vevent(seq=1, stamp="20240303T000000Z", rid="20240311T100000Z", start="20240313T140000Z", end="20240313T150000Z"))),
    )
    assert results[2].outcome is Outcome.STALE
    assert dt("20240312T140000Z") in starts(stored, *WIN)


def test_override_for_exdated_instance_needs_higher_sequence() -> None:
    master = vevent(seq=1, rrule=WEEKLY, exdate="20240311T100000Z")
    stored, _ = chain(("REQUEST", vcal("REQUEST", master)))
    assert dt("20240311T100000Z") not in starts(stored, *WIN)

    def override(seq: int) -> icalendar.Calendar:
        return vcal("REQUEST", vevent(seq=seq, stamp="20240302T000000Z", rid="20240311T100000Z", start="20240311T120000Z", end="20240311T130000Z"))

    assert apply(stored, "REQUEST", override(1)).outcome is Outcome.STALE
    res = apply(stored, "REQUEST", override(2))
    assert res.outcome is Outcome.UPDATED
    assert dt("20240311T120000Z") in starts(res.event, *WIN)


def test_full_request_drops_overrides_it_no_longer_carries() -> None:
    stored, _ = chain(
        ("REQUEST", vcal("REQUEST", vevent(rrule=WEEKLY))),
        ("REQUEST", vcal("REQUEST", vevent(seq=0, stamp="20240302T000000Z", rid="20240311T100000Z", start="20240312T140000Z", end="20240312T150000Z"))),
    )
    res = apply(stored, "REQUEST", vcal("REQUEST", vevent(seq=1, stamp="20240303T000000Z", rrule=WEEKLY)))
    assert res.outcome is Outcome.UPDATED and res.significant
    assert dt("20240311T100000Z") in starts(res.event, *WIN)


def test_series_cancel_then_expansion_empty() -> None:
    stored, (_, res) = chain(
        ("REQUEST", vcal("REQUEST", vevent(rrule=WEEKLY))),
        ("CANCEL", vcal("CANCEL", vevent(seq=1, stamp="20240302T000000Z", rrule=WEEKLY, status="CANCELLED"))),
    )
    assert res.outcome is Outcome.CANCELLED and res.significant and stored.cancelled
    assert expand_occurrences(stored, *WIN) == []
    again = apply(stored, "CANCEL", vcal("CANCEL", vevent(seq=1, stamp="20240302T000000Z", rrule=WEEKLY, status="CANCELLED")))
    assert again.outcome is Outcome.STALE


def test_cancel_uninviting_the_pal_is_removed() -> None:
    stored, (_, res) = chain(
        ("REQUEST", vcal("REQUEST", vevent())),
        # RFC 5546: a CANCEL without STATUS:CANCELLED uninvites the listed attendees
        ("CANCEL", vcal("CANCEL", vevent(seq=1, stamp="20240302T000000Z", status=None, attendees=(PAL,)))),
    )
    assert res.outcome is Outcome.REMOVED and stored.cancelled


def test_request_without_the_pal_is_removed() -> None:
    stored, (_, res) = chain(
        ("REQUEST", vcal("REQUEST", vevent())),
        ("REQUEST", vcal("REQUEST", vevent(seq=1, stamp="20240302T000000Z", attendees=("other@example.com",)))),
    )
    assert res.outcome is Outcome.REMOVED and res.significant and stored.cancelled
    back = apply(stored, "REQUEST", vcal("REQUEST", vevent(seq=2, stamp="20240303T000000Z")))
    assert back.outcome is Outcome.UPDATED and not back.event.cancelled


def test_mailing_list_invite_without_pal_is_created() -> None:
    res = apply(None, "REQUEST", vcal("REQUEST", vevent(attendees=("team@lists.example",))))
    assert res.outcome is Outcome.CREATED and not res.event.cancelled


def test_override_only_invite_creates_event() -> None:
    res = apply(None, "REQUEST", vcal("REQUEST", vevent(rid="20240311T100000Z", start="20240311T100000Z", end="20240311T110000Z")))
    assert res.outcome is Outcome.CREATED
    assert [(o.recurrence_id, o.start) for o in expand_occurrences(res.event, *WIN)] == [("20240311T100000Z", dt("20240311T100000Z"))]


def test_stored_ics_round_trips_display_name_tzid() -> None:
    cal = vcal("REQUEST", vevent(start=';TZID="(UTC-05:00) Eastern Time (US & Canada)":20240304T090000', end=';TZID="(UTC-05:00) Eastern Time (US & Canada)":20240304T100000'))
    stored = apply(None, "REQUEST", cal).event
    assert starts(stored, *WIN) == [dt("20240304T140000Z")]
