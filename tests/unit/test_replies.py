"""iMIP REPLY construction (CONFORMANCE cases 44-46)."""

from __future__ import annotations

from datetime import datetime, timezone
from email import message_from_bytes, policy
from pathlib import Path

import icalendar
import pytest

from app.domain.invites import ParsedInvite, parse_calendar
from app.domain.mime import extract_itip
from app.domain.replies import build_reply, build_reply_calendar, reply_address

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "invites"
NOW = datetime(2025, 2, 1, 9, 30, tzinfo=timezone.utc)
PAL = "pal@pals.example"


def load(name: str) -> ParsedInvite:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip("corpus not present")
    data = extract_itip(path.read_bytes()).data if path.suffix == ".eml" else path.read_bytes()
    return parse_calendar(data)[0]


def reply_event(msg) -> tuple[icalendar.Calendar, icalendar.Event]:
    """Round-trip through bytes like a receiver would."""
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.compat32)
    cal_parts = [p for p in parsed.walk() if p.get_content_type() == "text/calendar"]
    assert len(cal_parts) == 1
    assert cal_parts[0].get_param("method") == "REPLY"
    assert cal_parts[0].get_content_charset() == "utf-8"
    cal = icalendar.Calendar.from_ical(cal_parts[0].get_payload(decode=True))
    (ev,) = cal.walk("VEVENT")
    return cal, ev


def attendees(ev: icalendar.Event) -> list:
    a = ev.get("ATTENDEE")
    return a if isinstance(a, list) else [a] if a is not None else []


def test_case_44_accept_google_berlin() -> None:
    inv = load("google-request-berlin.eml")
    msg = build_reply(invite=inv, pal_address=PAL, pal_name="Pal Bot", partstat="ACCEPTED", now=NOW,
                      in_reply_to="<orig@example.org>")
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/calendar"]
    assert msg["To"].addresses[0].addr_spec == "alice@example.org"
    assert msg["From"].addresses[0].addr_spec == PAL and msg["From"].addresses[0].display_name == "Pal Bot"
    assert msg["Subject"] == "Accepted: Imip Testing"
    assert msg["Message-ID"].endswith("@pals.example>") and msg["Date"]
    assert msg["In-Reply-To"] == "<orig@example.org>"
    cal, ev = reply_event(msg)
    assert str(cal["METHOD"]) == "REPLY" and str(cal["VERSION"]) == "2.0" and cal.get("PRODID")
    assert [str(t["TZID"]) for t in cal.walk("VTIMEZONE")] == ["Europe/Berlin"]
    assert str(ev["UID"]) == inv.uid and int(ev["SEQUENCE"]) == 0
    assert ev["DTSTAMP"].dt == NOW
    assert ev["DTSTART"].dt.astimezone(timezone.utc) == datetime(2025, 2, 20, 18, tzinfo=timezone.utc)
    assert ev["DTEND"].dt.astimezone(timezone.utc) == datetime(2025, 2, 20, 19, tzinfo=timezone.utc)
    assert str(ev["SUMMARY"]) == "Imip Testing"
    assert str(ev["ORGANIZER"]).lower() == "mailto:alice@example.org"
    (att,) = attendees(ev)
    assert str(att).lower() == f"mailto:{PAL}" and att.params["PARTSTAT"] == "ACCEPTED"
    assert "RSVP" not in att.params
    assert "RECURRENCE-ID" not in ev and "COMMENT" not in ev


def test_case_45_decline_one_instance() -> None:
    inv = load("tb-scenario-repeat-event.eml")
    rid = datetime(2022, 3, 17, 11, tzinfo=timezone.utc)
    msg = build_reply(invite=inv, pal_address="receiver@example.com", pal_name="Receiver", partstat="DECLINED",
                      now=NOW, recurrence_id=rid)
    assert msg["Subject"] == "Declined: Repeat Event"
    _, ev = reply_event(msg)
    assert ev["RECURRENCE-ID"].dt == rid
    assert ev["DTSTART"].dt == rid
    (att,) = attendees(ev)
    assert att.params["PARTSTAT"] == "DECLINED" and str(att) == "mailto:receiver@example.com"


def test_case_45_instance_in_master_timezone() -> None:
    inv = load("teams-recurring-every-2-days-w-europe.ics")
    rid = datetime(2020, 11, 26, 10, tzinfo=timezone.utc)
    cal = build_reply_calendar(inv, pal_address=PAL, pal_name=None, partstat="DECLINED", now=NOW, recurrence_id=rid)
    text = cal.to_ical().decode()
    assert "RECURRENCE-ID;TZID=W. Europe Standard Time:20201126T110000" in text
    assert "TZID:W. Europe Standard Time" in text


def test_case_45_reply_for_existing_override_uses_its_data() -> None:
    inv = load("google-override-before-master.ics")
    rid = datetime(2026, 2, 11, 17, tzinfo=timezone.utc)  # 10:00 America/Denver
    cal = build_reply_calendar(inv, pal_address=PAL, pal_name=None, partstat="ACCEPTED", now=NOW, recurrence_id=rid)
    (ev,) = cal.walk("VEVENT")
    assert str(ev["SUMMARY"]).endswith("MODIFIED") and int(ev["SEQUENCE"]) == 1
    assert ev["DTSTART"].dt.astimezone(timezone.utc) == datetime(2026, 2, 11, 17, 30, tzinfo=timezone.utc)


@pytest.mark.parametrize(("name", "seq"), [("tb-scenario-update-minor-same-seq.eml", 0), ("tb-scenario-update-major-seq2.eml", 2),
                                           ("google-bogus-huge-sequence.ics", 1407317367304)])
def test_case_46_sequence_echoed_never_incremented(name: str, seq: int) -> None:
    inv = load(name)
    _, ev = reply_event(build_reply(invite=inv, pal_address=PAL, pal_name=None, partstat="ACCEPTED", now=NOW))
    assert int(ev["SEQUENCE"].to_ical()) == seq


def test_comment_and_icloud_relay_recipient() -> None:
    inv = load("icloud-invite-fr.eml")
    msg = build_reply(invite=inv, pal_address=PAL, pal_name="Pal", partstat="DECLINED", now=NOW,
                      comment="Zoom meetings are not supported yet")
    assert msg["To"].addresses[0].addr_spec.endswith("@imip.me.com")
    _, ev = reply_event(msg)
    assert str(ev["COMMENT"]) == "Zoom meetings are not supported yet"
    assert "Zoom meetings are not supported yet" in msg.get_body(("plain",)).get_content()


def test_utc_times_when_tzid_has_no_vtimezone() -> None:
    inv = parse_calendar(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:u1\r\n"
        "DTSTAMP:20250101T000000Z\r\nDTSTART;TZID=W. Europe Standard Time:20250110T120000\r\n"
        "DURATION:PT1H\r\nORGANIZER:mailto:o@example.com\r\nSUMMARY:s\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )[0]
    text = build_reply_calendar(inv, pal_address=PAL, pal_name=None, partstat="ACCEPTED", now=NOW).to_ical().decode()
    assert "DTSTART:20250110T110000Z" in text and "DURATION:PT1H" in text and "VTIMEZONE" not in text


def test_pal_listed_with_different_case_keeps_invite_spelling() -> None:
    inv = parse_calendar(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:u2\r\n"
        "DTSTAMP:20250101T000000Z\r\nDTSTART:20250110T120000Z\r\nORGANIZER:mailto:o@example.com\r\n"
        "ATTENDEE;ROLE=REQ-PARTICIPANT;RSVP=TRUE;PARTSTAT=NEEDS-ACTION:mailto:Pal@Pals.Example\r\n"
        "ATTENDEE:mailto:other@example.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    )[0]
    (ev,) = build_reply_calendar(inv, pal_address=PAL, pal_name="Pal", partstat="ACCEPTED", now=NOW).walk("VEVENT")
    (att,) = attendees(ev)
    assert str(att) == "mailto:Pal@Pals.Example" and att.params["ROLE"] == "REQ-PARTICIPANT"
    assert "RSVP" not in att.params


def test_invalid_arguments() -> None:
    inv = load("google-request-berlin.eml")
    with pytest.raises(ValueError):
        build_reply(invite=inv, pal_address=PAL, pal_name=None, partstat="MAYBE", now=NOW)
    with pytest.raises(ValueError):
        build_reply(invite=inv, pal_address=PAL, pal_name=None, partstat="ACCEPTED", now=datetime(2025, 1, 1))
    no_org = load("exchange-quoted-tzid-pacific.ics")
    with pytest.raises(ValueError):
        build_reply(invite=no_org, pal_address=PAL, pal_name=None, partstat="ACCEPTED", now=NOW)


def test_newlines_in_names_and_ids_cannot_break_or_add_headers() -> None:
    # RFC 6868 "^n" in a parameter is a newline; a PAL's own name is free text too.
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:u-nl\r\n"
           "DTSTAMP:20250101T000000Z\r\nDTSTART:20250301T100000Z\r\n"
           'ORGANIZER;CN="Eve^nBcc: victim@x.com";EMAIL="eve@acme.com^nBcc: x@y.z":mailto:eve@acme.com\r\n'
           f"ATTENDEE:mailto:{PAL}\r\nSUMMARY:Plan\\nBcc: victim@x.com\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    (invite,) = parse_calendar(ics)
    assert invite.organizer == "eve@acme.com"  # the EMAIL= value with a newline is no address
    msg = build_reply(invite=invite, pal_address=PAL, pal_name="Anna\r\nX-Evil: 1", partstat="ACCEPTED",
                      now=NOW, in_reply_to="<long-id\r\n @google.com>")
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.compat32)
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert parsed["To"] == '"Eve Bcc: victim@x.com" <eve@acme.com>'
    assert parsed["Subject"] == "Accepted: Plan Bcc: victim@x.com"
    assert parsed["In-Reply-To"] == "<long-id @google.com>"


@pytest.mark.parametrize("organizer, expected", [
    ("mailto:alex@acme.com", "alex@acme.com"),
    ("mailto:alex@bücher.example", "alex@xn--bcher-kva.example"),  # IDNA domain
    ("mailto:jörg@acme.com", None),  # an SMTPUTF8 local part has no ASCII form
    ("mailto:alex", None),
])
def test_reply_address_is_ascii_or_none(organizer: str, expected: str | None) -> None:
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:u-to\r\n"
           f"DTSTAMP:20250101T000000Z\r\nDTSTART:20250301T100000Z\r\nORGANIZER:{organizer}\r\n"
           f"ATTENDEE:mailto:{PAL}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    (invite,) = parse_calendar(ics)
    assert reply_address(invite) == expected
    if expected is None:
        with pytest.raises(ValueError):
            build_reply(invite=invite, pal_address=PAL, pal_name="Anna", partstat="ACCEPTED", now=NOW)
    else:
        assert build_reply(invite=invite, pal_address=PAL, pal_name="Anna", partstat="ACCEPTED",
                           now=NOW)["To"] == expected


def test_attacker_chosen_text_is_capped() -> None:
    """Security review item 3: a 6 KB SUMMARY became a 6 KB reply subject."""
    huge = "Pay invoice 4711 at evil.example " * 200
    ics = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nUID:u-cap\r\n"
           "DTSTAMP:20250101T000000Z\r\nDTSTART:20250301T100000Z\r\n"
           f"ORGANIZER;CN={'Victim ' * 100}:mailto:victim@acme.com\r\n"
           f"ATTENDEE:mailto:{PAL}\r\nSUMMARY:{huge}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    (invite,) = parse_calendar(ics)
    assert len(invite.summary) > 6000
    msg = build_reply(invite=invite, pal_address=PAL, pal_name="Anna", partstat="DECLINED", now=NOW,
                      in_reply_to="<" + "x" * 5000 + "@evil.example>")
    parsed = message_from_bytes(msg.as_bytes(), policy=policy.default)
    subject = " ".join(str(parsed["Subject"]).split())  # decoded
    assert subject.startswith("Declined: Pay invoice 4711") and len(subject) <= len("Declined: ") + 200
    assert subject.endswith("\u2026")  # cut, and marked as cut
    assert len(parsed["To"].addresses[0].display_name) <= 200
    assert parsed["In-Reply-To"] is None  # no real Message-ID is 5 KB long
    body = next(p for p in parsed.walk() if p.get_content_type() == "text/plain").get_payload(decode=True)
    assert len(body) < 600
    _, ev = reply_event(msg)
    assert len(str(ev["SUMMARY"])) <= 200
