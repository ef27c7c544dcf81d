"""When the PAL answers and when it stays silent (CONFORMANCE case 47, sender authentication)."""

from __future__ import annotations

import base64
from datetime import timedelta

import aiosmtplib
import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.config import reset_settings
from app.services import pals as pal_service
from app.services.accounts import create_account
from app.tables import CalendarEvent, Join
from tests.fixtures import run_worker
from tests.invite_factory import meeting

PAL = "acme-anna@tavusinvite.com"


@pytest.fixture
async def pal(clean_db):
    account, _ = await create_account("acme")
    return await pal_service.create_pal(account.id, {
        "pal_name": "Anna", "default_face_id": "r90bbd427f71",
        "layers": {"conferencing": {"username": "acme-anna", "allowlist": [".*@acme\\.com"]}},
    })


@pytest.fixture(scope="module")
def signer():
    """A DKIM key for evil.example (and acme.com) and the DNS answer that publishes it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)
    records = {b"sel._domainkey.evil.example.": record, b"sel._domainkey.acme.com.": record}

    def sign(raw: bytes, domain: bytes = b"evil.example") -> bytes:
        return dkim.sign(raw, b"sel", domain, pem, include_headers=[b"from", b"to", b"subject"]) + raw

    return sign, lambda name, timeout=5: records.get(name)


async def deliver(port: int, raw: bytes, sender: str = "alex@acme.com") -> None:
    await aiosmtplib.send(raw, hostname="127.0.0.1", port=port, sender=sender, recipients=[PAL])


async def test_authenticated_stranger_gets_a_decline(pal, inbound_smtp, smtp_sink, redis_queue, signer):
    sign, dns = signer
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer="mallory@evil.example")
    await deliver(inbound_smtp, sign(message.as_bytes()), sender="mallory@evil.example")
    await run_worker(dkim_dns=dns)
    [(_, rcpts, _)] = smtp_sink.messages
    [reply] = smtp_sink.parsed()
    assert rcpts == ["mallory@evil.example"] and reply["Subject"].startswith("Declined")
    stored = await CalendarEvent.select().first()
    assert stored["decision"] == "rejected" and stored["authenticated"] is True
    assert await Join.count() == 0


async def test_forged_signature_counts_as_unauthenticated(pal, inbound_smtp, smtp_sink, redis_queue, signer):
    sign, dns = signer
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer="mallory@evil.example")
    tampered = sign(message.as_bytes()).replace(b"Weekly sync", b"Weekly sink")
    await deliver(inbound_smtp, tampered, sender="mallory@evil.example")
    await run_worker(dkim_dns=dns)
    assert smtp_sink.messages == []
    assert (await CalendarEvent.select().first())["authenticated"] is False


async def test_strict_mode_drops_unauthenticated_invites(pal, inbound_smtp, smtp_sink, redis_queue, monkeypatch):
    monkeypatch.setenv("SENDER_AUTH", "strict")
    reset_settings()
    try:
        _, message = meeting(start_in=timedelta(days=1), pal_address=PAL)
        await deliver(inbound_smtp, message.as_bytes())
        await run_worker()
    finally:
        monkeypatch.undo()  # back to the suite's SENDER_AUTH, then re-read it
        reset_settings()
    assert smtp_sink.messages == [] and await CalendarEvent.count() == 0


@pytest.mark.parametrize(
    "mutate, replies",
    [
        pytest.param(lambda raw: raw, 1, id="control-unchanged-invite-is-answered"),
        pytest.param(lambda raw: raw.replace(b"METHOD:REQUEST", b"METHOD:PUBLISH").replace(b"method=REQUEST", b"method=PUBLISH")
                     .replace(b'method="REQUEST"', b'method="PUBLISH"'), 0, id="publish"),
        pytest.param(lambda raw: raw.replace(b"mailto:" + PAL.encode(), b"mailto:team-list@acme.com"), 0, id="not-an-attendee"),
        pytest.param(lambda raw: raw.replace(b"ORGANIZER;CN=Organizer:", b"ORGANIZER;SCHEDULE-AGENT=CLIENT;CN=Organizer:"),
                     0, id="schedule-agent-client"),
        pytest.param(lambda raw: raw.replace(b"STATUS:CONFIRMED", b"STATUS:CANCELLED"), 0, id="cancelled-event"),
    ],
)
async def test_case_47_no_reply(pal, inbound_smtp, smtp_sink, redis_queue, signer, mutate, replies):
    sign, dns = signer
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL)
    # Base64 would hide the calendar from a byte-level edit; send it as 7bit.
    raw = message.as_bytes(policy=message.policy.clone(cte_type="7bit"))
    for part in message.walk():
        if part.get_content_type() in ("text/calendar", "application/ics"):
            ics = part.get_payload(decode=True)
            raw = raw.replace(part.get_payload().encode(), base64.encodebytes(mutate(ics)).replace(b"\n", b"\r\n"))
    await deliver(inbound_smtp, sign(raw, b"acme.com"))  # only an authenticated organizer is answered
    await run_worker(dkim_dns=dns)
    assert len(smtp_sink.messages) == replies
