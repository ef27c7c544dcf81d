"""Builds invitation emails in the shape of real Google Calendar ones (see the corpus)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

MEET_URL = "https://meet.google.com/abc-defg-hij"


def _ics_time(value: datetime) -> str:
    return value.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def vevent(*, uid: str, start: datetime, end: datetime, organizer: str, attendees: list[str], sequence: int = 0,
           dtstamp: datetime | None = None, summary: str = "Weekly sync", link: str | None = MEET_URL,
           location: str = "", description: str = "", rrule: str | None = None, exdates: list[datetime] = (),
           recurrence_id: datetime | None = None, status: str = "CONFIRMED", range_: str | None = None) -> str:
    lines = [
        "BEGIN:VEVENT",
        f"DTSTART:{_ics_time(start)}",
        f"DTEND:{_ics_time(end)}",
        f"DTSTAMP:{_ics_time(dtstamp or datetime.now(timezone.utc))}",
        f"ORGANIZER;CN=Organizer:mailto:{organizer}",
        f"UID:{uid}",
    ]
    if rrule:
        lines.append(f"RRULE:{rrule}")
    for ex in exdates:
        lines.append(f"EXDATE:{_ics_time(ex)}")
    if recurrence_id is not None:
        rng = f";RANGE={range_}" if range_ else ""
        lines.append(f"RECURRENCE-ID{rng}:{_ics_time(recurrence_id)}")
    for attendee in [organizer, *attendees]:
        lines.append(f"ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN={attendee}:mailto:{attendee}")
    if link and "meet.google.com" in link:
        lines.append(f"X-GOOGLE-CONFERENCE:{link}")
        description = description or f"Join with Google Meet: {link}"
    elif link:
        location = location or link
    lines += [
        f"DESCRIPTION:{description}",
        f"LOCATION:{location}",
        f"SEQUENCE:{sequence}",
        f"STATUS:{status}",
        f"SUMMARY:{summary}",
        "TRANSP:OPAQUE",
        "END:VEVENT",
    ]
    return "\r\n".join(lines)


def calendar(method: str, *events: str) -> str:
    return "\r\n".join([
        "BEGIN:VCALENDAR", "PRODID:-//Google Inc//Google Calendar 70.9054//EN", "VERSION:2.0",
        "CALSCALE:GREGORIAN", f"METHOD:{method}", *events, "END:VCALENDAR", "",
    ])


def invite_email(ics: str, *, organizer: str, to: str, method: str = "REQUEST", subject: str = "Invitation: Weekly sync") -> EmailMessage:
    """multipart/mixed(alternative(text, html, text/calendar), application/ics) as Google sends."""
    msg = EmailMessage()
    msg["From"] = f"Organizer <{organizer}>"
    msg["Sender"] = "Google Calendar <calendar-notification@google.com>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(timezone.utc))
    msg["Message-ID"] = make_msgid(domain="google.com")
    msg.set_content("You have been invited to the following event.")
    msg.add_alternative("<p>You have been invited to the following event.</p>", subtype="html")
    msg.get_payload()[-1]  # keep the alternative part order: text, html, then calendar
    msg.add_alternative(ics.encode(), maintype="text", subtype="calendar", params={"method": method})
    msg.make_mixed()
    msg.add_attachment(ics.encode(), maintype="application", subtype="ics", filename="invite.ics")
    return msg


def meeting(*, start_in: timedelta, duration: timedelta = timedelta(minutes=30), organizer: str = "alex@acme.com",
            pal_address: str, method: str = "REQUEST", uid: str | None = None, now: datetime | None = None,
            **kwargs) -> tuple[str, EmailMessage]:
    """A one-off meeting `start_in` from now; returns (uid, email)."""
    now = now or datetime.now(timezone.utc)
    uid = uid or f"{uuid.uuid4().hex}@google.com"
    start = (now + start_in).replace(microsecond=0)
    ics = calendar(method, vevent(uid=uid, start=start, end=start + duration, organizer=organizer,
                                  attendees=[pal_address], **kwargs))
    return uid, invite_email(ics, organizer=organizer, to=pal_address, method=method)
