"""Invites with hostile or odd lines, through process_inbound on the real database.

Each line below once made ingestion raise (an insert that failed, a reply that could not
be built, an expansion that tripped), so the invite failed on every retry and was
never answered. Now every message must end processed, whatever it says.
"""

from __future__ import annotations

import base64
import random
import re
from datetime import datetime, timedelta, timezone

from app.services import pals as pal_service
from app.services.accounts import create_account
from app.services.inbound import store_message
from app.services.invites import process_inbound
from app.tables import CalendarEvent, InboundMessage
from tests.invite_factory import calendar, vevent
from tests.unit.test_mutated_invites import mutate

PAL = "anna@tavusinvite.com"
MESSAGES = 300
ODD_LINES = [
    b"UID:" + b"u" * 990, b"SEQUENCE:99999999999999999999999", b"SEQUENCE:1407317367304", b"SEQUENCE:-5",
    b'ORGANIZER;CN="a^nBcc: x@y.z":mailto:alex@acme.com', b"ORGANIZER:mailto:alex",
    b"ORGANIZER:mailto:j\xc3\xb6rg@acme.com", b"ORGANIZER:mailto:" + b"a" * 400 + b"@acme.com",
    b"RECURRENCE-ID:20261201T100000Z", b"RRULE:FREQ=DAILY;COUNT=3", b"RRULE:FREQ=MINUTELY",
    b"EXDATE:20261126T100000Z", b"STATUS:CANCELLED", b"DTSTART;TZID=Nowhere/Land:20261125T100000",
    b"DTSTART;VALUE=DATE:20261125", b"DTSTART;VALUE=TIME:100000", b"DTEND:20261124T100000Z", b"DURATION:-PT1H",
    b"ATTENDEE;PARTSTAT=ACCEPTED:mailto:anna@tavusinvite.com", b"DESCRIPTION:https://zoom.us/j/123",
    b"X-GOOGLE-CONFERENCE:https://meet.google.com/zzz-zzzz-zzz", b"SUMMARY:\x00" + b"\xf0\x9f\x98\x80" * 500,
]


def odd_invite(rng: random.Random, now: datetime) -> bytes:
    method = rng.choice(["REQUEST", "REQUEST", "REQUEST", "CANCEL"])
    start = now + timedelta(minutes=rng.randrange(-120, 60 * 24 * 3))
    lines = vevent(uid=f"fz{rng.randrange(20)}@google.com", start=start, end=start + timedelta(minutes=30),
                   organizer="alex@acme.com", attendees=[PAL], sequence=rng.randrange(5)).encode().split(b"\r\n")
    for _ in range(rng.randint(1, 3)):
        line = rng.choice(ODD_LINES)
        name = re.split(rb"[;:]", line, maxsplit=1)[0]
        same = [i for i, old in enumerate(lines) if old.startswith(name)]
        if same and rng.random() < 0.7:
            lines[same[0]] = line
        else:
            lines.insert(rng.randrange(1, len(lines) - 1), line)
    data = calendar(method, b"\r\n".join(lines).decode("utf-8", "replace")).encode()
    if rng.random() < 0.2:
        data = mutate(data, rng)
    return (b"From: alex@acme.com\r\nTo: anna@tavusinvite.com\r\nSubject: x\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/calendar; method=" + method.encode() + b"; charset=UTF-8\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(data))


async def test_every_odd_invite_ends_processed(clean_db, redis_queue) -> None:
    account, _ = await create_account("acme")
    await pal_service.create_pal(account.id, {"pal_name": "Anna", "default_face_id": "r90bbd427f71",
                                              "layers": {"conferencing": {"username": "anna"}}})
    rng = random.Random(7)
    now = datetime.now(timezone.utc)
    for _ in range(MESSAGES):
        pk = await store_message(odd_invite(rng, now), envelope_from="alex@acme.com", recipients=[PAL],
                                 source="smtp", now=now)
        await process_inbound(pk, now=now)  # raising here is the failure this test exists for
    statuses = {r["status"] for r in await InboundMessage.select(InboundMessage.status)}
    assert statuses == {"processed"}
    assert await CalendarEvent.count() > 0  # not everything was refused: the odd lines mostly still plan
