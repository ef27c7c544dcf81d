"""Invite ingestion end to end: real SMTP in, real Redis and arq worker, real SMTP out."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import time
from datetime import datetime, timedelta, timezone

import aiosmtplib
import dkim
import icalendar
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.services import pals as pal_service
from app.services.accounts import create_account
from app.services.inbound import store_message
from app.services.invites import process_inbound
from app.tables import CalendarEvent, Delivery, InboundMessage, Join, PalEvent
from tests.fixtures import run_worker
from tests.invite_factory import calendar, invite_email, meeting, vevent

FACE = "r90bbd427f71"
PAL_ADDRESS = "acme-anna@tavusinvite.com"

# Only an authenticated organizer is answered, so these invites are DKIM-signed by acme.com
# with a local key, published by a stand-in for DNS.
_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
_PEM = _KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                          serialization.NoEncryption())
_RECORD = b"v=DKIM1; k=rsa; p=" + base64.b64encode(_KEY.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo))


def acme_signed(message) -> bytes:
    raw = message if isinstance(message, bytes) else message.as_bytes()
    return dkim.sign(raw, b"sel", b"acme.com", _PEM, include_headers=[b"from", b"to", b"subject"]) + raw


@pytest.fixture(autouse=True)
def acme_dkim_key(monkeypatch):
    monkeypatch.setattr("app.services.invites.dns_txt",
                        lambda name, timeout=2: _RECORD if name == b"sel._domainkey.acme.com." else None)


@pytest.fixture
async def pal(clean_db):
    account, _ = await create_account("acme")
    return await pal_service.create_pal(account.id, {
        "pal_name": "Anna", "default_face_id": FACE,
        "layers": {"conferencing": {"username": "acme-anna", "allowlist": [".*@acme\\.com"]}},
    })


async def send(port: int, message, *, to: str = PAL_ADDRESS, sender: str = "alex@acme.com", sign: bool = True):
    raw = acme_signed(message) if sign else message
    return await aiosmtplib.send(raw, hostname="127.0.0.1", port=port, sender=sender, recipients=[to])


def reply_calendar(raw_message) -> icalendar.Calendar:
    for part in raw_message.walk():
        if part.get_content_type() == "text/calendar":
            assert part.get_param("method") == "REPLY"
            return icalendar.Calendar.from_ical(part.get_payload(decode=True))
    raise AssertionError("no text/calendar part in the reply")


def only_event(cal: icalendar.Calendar) -> icalendar.Event:
    events = list(cal.walk("VEVENT"))
    assert len(events) == 1
    return events[0]


async def test_allowlisted_google_invite_is_accepted_with_a_real_reply(pal, inbound_smtp, smtp_sink, redis_queue):
    uid, message = meeting(start_in=timedelta(days=2), pal_address=PAL_ADDRESS, sequence=3)
    errors, response = await send(inbound_smtp, message)
    assert errors == {} and "queued as" in response
    assert await InboundMessage.count() == 1  # stored before the 250
    await run_worker()

    assert len(smtp_sink.messages) == 1
    mail_from, rcpts, _ = smtp_sink.messages[0]
    assert mail_from == PAL_ADDRESS and rcpts == ["alex@acme.com"]
    reply = smtp_sink.parsed()[0]
    assert reply["Subject"].startswith("Accepted")
    cal = reply_calendar(reply)
    assert cal["METHOD"] == "REPLY"
    event = only_event(cal)
    assert str(event["UID"]) == uid and int(event["SEQUENCE"]) == 3
    attendee = event["ATTENDEE"]
    assert not isinstance(attendee, list), "exactly one ATTENDEE"
    assert str(attendee).lower() == f"mailto:{PAL_ADDRESS}"
    assert attendee.params["PARTSTAT"] == "ACCEPTED"

    stored = await CalendarEvent.select().first()
    assert stored["decision"] == "accepted" and stored["meeting_url"] == "https://meet.google.com/abc-defg-hij"
    joins = await Join.select()
    assert len(joins) == 1 and joins[0]["status"] == "scheduled"
    assert joins[0]["join_at"] == joins[0]["start_at"] - timedelta(seconds=60)
    kinds = [e["kind"] for e in await PalEvent.select(PalEvent.kind).order_by(PalEvent.id)]
    assert kinds[:3] == ["invite_received", "invite_accepted", "join_scheduled"] and "reply_sent" in kinds


async def test_redelivery_changes_nothing_and_sends_nothing_twice(pal, inbound_smtp, smtp_sink, redis_queue):
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS)
    await send(inbound_smtp, message)
    await send(inbound_smtp, message)
    await run_worker()
    assert await InboundMessage.count() == 2
    assert len(smtp_sink.messages) == 1
    assert await Join.count() == 1


async def test_not_allowlisted_unauthenticated_is_rejected_silently(pal, inbound_smtp, smtp_sink, redis_queue):
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS, organizer="mallory@evil.example")
    await send(inbound_smtp, message, sender="mallory@evil.example", sign=False)
    await run_worker()
    assert smtp_sink.messages == []  # no backscatter to a possibly spoofed address
    stored = await CalendarEvent.select().first()
    assert stored["decision"] == "rejected" and "allowlist" in stored["reason"]
    assert await Join.count() == 0
    assert await PalEvent.exists().where(PalEvent.kind == "invite_rejected")


@pytest.mark.parametrize(
    "link, comment",
    [(None, "no Google Meet link"), ("https://us02web.zoom.us/j/123456789?pwd=abc&uname=x", "Zoom meetings are not supported yet"),
     ("https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0", "Microsoft Teams meetings are not supported yet")],
)
async def test_no_meet_link_is_declined(pal, inbound_smtp, smtp_sink, redis_queue, link, comment):
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS, link=link)
    await send(inbound_smtp, message)
    await run_worker()
    event = only_event(reply_calendar(smtp_sink.parsed()[0]))
    assert event["ATTENDEE"].params["PARTSTAT"] == "DECLINED"
    if link:
        assert comment in str(event["COMMENT"])
    stored = await CalendarEvent.select().first()
    assert stored["decision"] == "declined"
    assert stored["platform"] == ({None: None, "h": None}.get(link) if link is None else ("zoom" if "zoom" in link else "teams"))
    if link and "zoom" in link:
        assert stored["meeting_url"].endswith("?pwd=abc")
    assert await Join.count() == 0


async def test_unknown_recipient_refused_at_rcpt(pal, inbound_smtp):
    _, message = meeting(start_in=timedelta(days=1), pal_address="nobody@tavusinvite.com")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as caught:
        await send(inbound_smtp, message, to="nobody@tavusinvite.com")
    assert caught.value.recipients[0].code == 550
    assert await InboundMessage.count() == 0


async def test_junk_recipients_are_refused_not_deferred(pal, inbound_smtp):
    """A 451 would have the sender retry for days; no PAL can have such an address."""
    reader, writer = await asyncio.open_connection("127.0.0.1", inbound_smtp)

    async def command(line: bytes) -> bytes:
        writer.write(line + b"\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), 5)

    await reader.readline()  # greeting
    assert (await command(b"EHLO test"))[:3] == b"250"
    while (await reader.readline())[:4] != b"250 ":
        pass
    assert (await command(b"MAIL FROM:<alex@acme.com>"))[:3] == b"250"
    for junk in (b"acme\x00anna@tavusinvite.com", b"acme-anna@tavus\x00invite.com", b"-x-@tavusinvite.com"):
        assert (await command(b"RCPT TO:<" + junk + b">"))[:3] == b"550", junk
    assert (await command(b"RCPT TO:<" + PAL_ADDRESS.encode() + b">"))[:3] == b"250"
    await command(b"QUIT")
    writer.close()


async def test_unchanged_answer_not_resent_but_new_sequence_is(pal, inbound_smtp, smtp_sink, redis_queue):
    now = datetime.now(timezone.utc)
    uid, first = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS, now=now)
    await send(inbound_smtp, first)
    await run_worker()
    # Same SEQUENCE, newer DTSTAMP, new title: a minor update, the answer stands.
    _, minor = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS, uid=uid, now=now, summary="Renamed",
                       dtstamp=now + timedelta(minutes=1))
    await send(inbound_smtp, minor)
    await run_worker()
    assert len(smtp_sink.messages) == 1
    assert (await CalendarEvent.select().first())["summary"] == "Renamed"
    # A reschedule bumps SEQUENCE: the organizer reset our PARTSTAT, so we answer again.
    _, moved = meeting(start_in=timedelta(days=1, hours=2), pal_address=PAL_ADDRESS, uid=uid, now=now, sequence=1,
                       dtstamp=now + timedelta(minutes=2))
    await send(inbound_smtp, moved)
    await run_worker()
    assert len(smtp_sink.messages) == 2
    join = await Join.select().first()
    assert join["start_at"] == (now + timedelta(days=1, hours=2)).replace(microsecond=0)


async def test_cancel_sends_no_reply_and_cancels_the_join(pal, inbound_smtp, smtp_sink, redis_queue):
    now = datetime.now(timezone.utc)
    uid, message = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS, now=now)
    await send(inbound_smtp, message)
    await run_worker()
    _, cancel = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS, uid=uid, now=now, method="CANCEL",
                        sequence=1, status="CANCELLED", dtstamp=now + timedelta(minutes=1))
    await send(inbound_smtp, cancel)
    await run_worker()
    assert len(smtp_sink.messages) == 1  # only the original ACCEPTED
    assert (await Join.select().first())["status"] == "cancelled"
    assert (await CalendarEvent.select().first())["decision"] == "cancelled"


async def test_relay_outage_delays_but_loses_no_reply(pal, inbound_smtp, smtp_sink, redis_queue):
    from workers.mail import flush_outbox

    smtp_sink.refuse = True
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS)
    await send(inbound_smtp, message)
    await run_worker()
    row = await Delivery.select().where(Delivery.kind == "email").first()
    assert row["status"] == "pending" and row["attempts"] == 1 and "451" in row["last_error"]
    smtp_sink.refuse = False
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    assert await flush_outbox({"clock": lambda: later}) == 1
    assert len(smtp_sink.messages) == 1
    assert (await Delivery.select().where(Delivery.kind == "email").first())["status"] == "sent"


async def test_message_stored_while_queue_lost_is_processed_by_the_cron(pal, inbound_smtp, smtp_sink, redis_queue):
    from workers.mail import requeue_messages

    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS)
    await send(inbound_smtp, message)
    await redis_queue.flushdb()  # Redis lost the job (flush, restart, outage)
    await run_worker()
    assert (await InboundMessage.select().first())["status"] == "pending"
    later = datetime.now(timezone.utc) + timedelta(minutes=5)
    assert await requeue_messages({"clock": lambda: later}) == 1
    await run_worker()
    assert (await InboundMessage.select().first())["status"] == "processed"
    assert len(smtp_sink.messages) == 1


async def test_webhook_door(pal, client, smtp_sink, redis_queue, monkeypatch):
    from app.config import reset_settings

    monkeypatch.setenv("INBOUND_WEBHOOK_SECRET", "s3cret")
    reset_settings()
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS)
    raw = acme_signed(message)

    def signed(body: bytes, secret: str = "s3cret") -> dict[str, str]:
        ts = str(int(time.time()))
        return {"x-webhook-timestamp": ts,
                "x-webhook-signature": "v1=" + hmac.new(secret.encode(), ts.encode() + b"." + body,
                                                        hashlib.sha256).hexdigest()}

    assert (await client.post("/v2/inbound-email", content=raw)).status_code == 401
    assert (await client.post("/v2/inbound-email", content=raw, headers=signed(raw, "nope"))).status_code == 401
    response = await client.post("/v2/inbound-email", content=raw, headers=signed(raw))
    assert response.status_code == 202, response.text
    await run_worker()
    assert len(smtp_sink.messages) == 1
    assert (await client.post("/v2/inbound-email", content=b"", headers=signed(b""))).status_code == 400
    monkeypatch.delenv("INBOUND_WEBHOOK_SECRET")
    reset_settings()


async def test_bad_input_harms_nothing_and_server_keeps_serving(pal, inbound_smtp, smtp_sink, redis_queue):
    garbage = b"\x00\xff\xfe not a message at all \r\n\r\n\x80\x81"
    broken_ics = invite_email("BEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nBEGIN:VEVENT\r\nDTSTART:garbage\r\n",
                              organizer="alex@acme.com", to=PAL_ADDRESS)
    nested = b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
    for depth in range(1, 300):
        nested += f"--b{depth - 1}\r\nContent-Type: multipart/mixed; boundary=b{depth}\r\n\r\n".encode()
    now = datetime.now(timezone.utc)
    many = calendar("REQUEST", vevent(uid="many@google.com", start=now + timedelta(days=1),
                                      end=now + timedelta(days=1, hours=1), organizer="alex@acme.com",
                                      attendees=[PAL_ADDRESS] + [f"guest{i}@acme.com" for i in range(10_000)]))
    for raw in (garbage, broken_ics.as_bytes(), nested,
                invite_email(many, organizer="alex@acme.com", to=PAL_ADDRESS).as_bytes()):
        await aiosmtplib.send(raw, hostname="127.0.0.1", port=inbound_smtp, sender="alex@acme.com", recipients=[PAL_ADDRESS])
    with pytest.raises(aiosmtplib.SMTPResponseException) as caught:
        await aiosmtplib.send(b"Subject: big\r\n\r\n" + b"x" * (50 * 1024 * 1024), hostname="127.0.0.1",
                              port=inbound_smtp, sender="alex@acme.com", recipients=[PAL_ADDRESS])
    assert caught.value.code == 552
    await run_worker()
    statuses = [r["status"] for r in await InboundMessage.select(InboundMessage.status)]
    assert statuses == ["processed"] * 4
    assert (await CalendarEvent.select().where(CalendarEvent.uid == "many@google.com").first())["decision"] == "accepted"
    # Still serving: a normal invite goes through.
    _, ok = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS)
    await send(inbound_smtp, ok)
    await run_worker()
    assert any(m["Subject"].startswith("Accepted") for m in smtp_sink.parsed())


async def test_nul_characters_in_mail_are_replaced_not_fatal(pal, inbound_smtp, smtp_sink, redis_queue):
    """PostgreSQL text cannot hold U+0000; an invite carrying some must still be answered."""
    uid, message = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS, summary="Stand\x00up")
    del message["Subject"]
    message["Subject"] = "=?utf-8?b?SW52aXRlAA==?="  # "Invite" + NUL, as an encoded word
    raw = message.as_bytes().replace(b"Message-ID: <", b"Message-ID: <\x00", 1)
    assert b"Message-ID: <\x00" in raw
    await aiosmtplib.send(acme_signed(raw), hostname="127.0.0.1", port=inbound_smtp, sender="alex@acme.com",
                          recipients=[PAL_ADDRESS])
    await run_worker()

    assert [r["status"] for r in await InboundMessage.select(InboundMessage.status)] == ["processed"]
    stored = await CalendarEvent.select().where(CalendarEvent.uid == uid).first()
    assert stored["summary"] == "Stand\ufffdup" and stored["decision"] == "accepted"
    assert [m["Subject"].startswith("Accepted") for m in smtp_sink.parsed()] == [True]


async def ingest(message, now: datetime) -> dict:
    pk = await store_message(acme_signed(message), envelope_from="alex@acme.com", recipients=[PAL_ADDRESS],
                             source="smtp", now=now)
    return await process_inbound(pk, now=now)


async def test_oversized_values_are_refused_or_clamped_never_fatal(pal, redis_queue):
    now = datetime.now(timezone.utc)
    _, long_uid = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS, now=now, uid="u" * 1200)
    assert "UID longer than 1000" in (await ingest(long_uid, now))["ignored"]
    _, long_organizer = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS, now=now,
                                organizer="a" * 400 + "@acme.com")
    assert (await ingest(long_organizer, now))["outcomes"][0]["ignored"] == "no ORGANIZER"
    uid, huge_sequence = meeting(start_in=timedelta(days=1), pal_address=PAL_ADDRESS, now=now, sequence=10**25)
    assert (await ingest(huge_sequence, now))["outcomes"][0]["decision"] == "accepted"
    stored = await CalendarEvent.select().where(CalendarEvent.uid == uid).first()
    assert stored["sequence"] == 2**63 - 1  # BIGINT's largest: still later than any sane SEQUENCE


async def test_changed_answers_after_a_long_uid_are_all_sent(pal, redis_queue):
    """Reply dedupe keys end with SEQUENCE and PARTSTAT; a long UID must not cut them off."""
    now = datetime.now(timezone.utc)
    uid = "x" * 900 + "@google.com"
    for sequence in (1, 2):
        # A new time and SEQUENCE: a significant change, so the answer is sent again.
        _, message = meeting(start_in=timedelta(days=1, hours=sequence), pal_address=PAL_ADDRESS, now=now,
                             uid=uid, sequence=sequence)
        await ingest(message, now)
    keys = [r["dedupe_key"] for r in await Delivery.select(Delivery.dedupe_key).where(Delivery.kind == "email")]
    assert len(keys) == 2 and len(set(keys)) == 2 and all(len(k) <= 500 for k in keys)
