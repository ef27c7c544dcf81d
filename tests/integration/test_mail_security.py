"""Security review (issue 10), items 2, 3, 4, 11 and 12, end to end: real SMTP on loopback,
real PostgreSQL, Redis and arq worker, DKIM signatures made with a local key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import time
from contextlib import contextmanager
from datetime import timedelta

import aiosmtplib
import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.config import Settings, reset_settings
from app.services import pals as pal_service
from app.services.accounts import create_account
from app.services.rows import json_value
from app.tables import CalendarEvent, Delivery, InboundMessage, Join
from tests.fixtures import run_worker
from tests.invite_factory import meeting

PAL = "acme-anna@tavusinvite.com"
GOOGLE_SENDER = "Google Calendar <calendar-notification@google.com>"


@contextmanager
def env(**values: str | None):
    """Set (or, with None, remove) environment variables and re-read settings; restore after."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    reset_settings()
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        reset_settings()


@pytest.fixture(scope="module")
def dkim_key():
    """One key, published for every domain these tests sign as; returns (sign, dns)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)

    def dns(name: bytes, timeout: int = 5) -> bytes | None:
        return record if name.startswith(b"sel._domainkey.") else None

    def sign(message, domain: str) -> bytes:
        raw = message if isinstance(message, bytes) else message.as_bytes()
        return dkim.sign(raw, b"sel", domain.encode(), pem,
                         include_headers=[b"from", b"sender", b"to", b"subject"]) + raw

    return sign, dns


async def make_pal(username: str, allowlist: list[str]) -> dict:
    account, _ = await create_account(f"acct-{username}")
    return await pal_service.create_pal(account.id, {
        "pal_name": "Anna", "default_face_id": "r90bbd427f71",
        "layers": {"conferencing": {"username": username, "allowlist": allowlist}},
    })


async def deliver(port: int, raw, *, sender: str = "alex@acme.com", to: list[str] | None = None):
    return await aiosmtplib.send(raw, hostname="127.0.0.1", port=port, sender=sender, recipients=to or [PAL])


def from_(message, address: str, *, sender: str | None = None):
    """The same invitation with other From / Sender headers."""
    del message["From"], message["Sender"]
    message["From"] = address
    if sender:
        message["Sender"] = sender
    return message


# --- item 3: strict is the default; nobody unauthenticated is ever answered --------------

def test_defaults_are_strict_and_narrow() -> None:
    with env(SENDER_AUTH=None, CALENDAR_SERVICE_DOMAINS=None, SMTP_MAX_RECIPIENTS=None,
             INBOUND_WEBHOOK_MAX_AGE_SECONDS=None):
        settings = Settings()
    assert settings.sender_auth == "strict"
    assert set(settings.calendar_services) == {"google.com", "icloud.com"}
    assert not {"outlook.com", "hotmail.com", "live.com"} & set(settings.calendar_services)
    assert settings.smtp_max_recipients == 100 and settings.inbound_webhook_max_age == 300


async def test_by_default_an_unsigned_invite_is_dropped(clean_db, inbound_smtp, smtp_sink, redis_queue, dkim_key):
    sign, dns = dkim_key
    await make_pal("acme-anna", [".*@acme\\.com"])
    with env(SENDER_AUTH=None):
        _, unsigned = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer="boss@acme.com")
        await deliver(inbound_smtp, unsigned)
        await run_worker(dkim_dns=dns)
        assert await CalendarEvent.count() == 0 and await Join.count() == 0 and smtp_sink.messages == []
        [row] = await InboundMessage.select()
        assert json_value(row["result"], {})["outcomes"][0]["dropped"] == "unauthenticated"
        # The same invitation signed by acme.com is accepted and answered.
        _, signed = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer="boss@acme.com")
        await deliver(inbound_smtp, sign(from_(signed, "Boss <boss@acme.com>"), "acme.com"))
        await run_worker(dkim_dns=dns)
    assert [e["decision"] for e in await CalendarEvent.select()] == ["accepted"]
    assert [m[1] for m in smtp_sink.messages] == [["boss@acme.com"]]


async def test_an_unknown_mode_is_strict(clean_db, inbound_smtp, smtp_sink, redis_queue):
    await make_pal("acme-anna", [])
    with env(SENDER_AUTH="off"):
        _, message = meeting(start_in=timedelta(days=1), pal_address=PAL)
        await deliver(inbound_smtp, message)
        await run_worker()
    assert await CalendarEvent.count() == 0


async def test_mark_mode_processes_but_never_answers_the_unauthenticated(clean_db, inbound_smtp, smtp_sink,
                                                                         redis_queue):
    """A PAL with an empty allowlist declined, to a spoofed third party, with 6 KB of subject."""
    await make_pal("acme-anna", [])
    with env(SENDER_AUTH="mark"):
        _, spoofed = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer="victim@third.example",
                             link=None, summary="Buy now at evil.example " * 250)
        await deliver(inbound_smtp, spoofed, sender="attacker@evil.example")
        _, unsigned_ok = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer="alex@acme.com")
        await deliver(inbound_smtp, unsigned_ok)
        await run_worker()
    decisions = {e["organizer"]: (e["decision"], e["authenticated"]) for e in await CalendarEvent.select()}
    assert decisions == {"victim@third.example": ("declined", False), "alex@acme.com": ("accepted", False)}
    assert await Join.count() == 1  # mark still plans the unauthenticated meeting...
    assert smtp_sink.messages == [] and await Delivery.count() == 0  # ...but answers no one


def test_mark_mode_says_so_once_at_start(caplog) -> None:
    from app.services import invites

    for mode, expected in (("mark", 1), ("strict", 0), ("bogus", 1)):
        invites._mode_announced = False
        caplog.clear()
        with env(SENDER_AUTH=mode), caplog.at_level(logging.WARNING, logger="app.services.invites"):
            invites.announce_sender_auth_mode()
            invites.announce_sender_auth_mode()
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == expected, (mode, warnings)
        if mode == "mark":
            assert "SENDER_AUTH=mark" in warnings[0].getMessage() and "development" in warnings[0].getMessage()


# --- item 2: forwarding-noreply@google.com only with Google's signature -------------------

@pytest.mark.parametrize("signer", [None, "evil.example"])
async def test_forwarding_address_without_googles_signature_is_not_allowlisted(
        clean_db, inbound_smtp, smtp_sink, redis_queue, dkim_key, signer):
    sign, dns = dkim_key
    await make_pal("acme-anna", ["boss@acme.com"])
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer="forwarding-noreply@google.com",
                         link="https://meet.google.com/att-acke-rrr")
    message = from_(message, "attacker@evil.example")
    raw = sign(message, signer) if signer else message.as_bytes()
    with env(SENDER_AUTH="mark"):  # the old default, where this was accepted
        await deliver(inbound_smtp, raw, sender="attacker@evil.example")
        await run_worker(dkim_dns=dns)
    [event] = await CalendarEvent.select()
    assert (event["decision"], event["authenticated"]) == ("rejected", False)
    assert await Join.count() == 0 and smtp_sink.messages == [] and await Delivery.count() == 0


async def test_forwarding_address_signed_by_google_is_admitted(clean_db, inbound_smtp, smtp_sink, redis_queue,
                                                               dkim_key):
    sign, dns = dkim_key
    await make_pal("acme-anna", ["boss@acme.com"])
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer="forwarding-noreply@google.com")
    message = from_(message, "Google Calendar <forwarding-noreply@google.com>")
    await deliver(inbound_smtp, sign(message, "google.com"), sender="forwarding-noreply@google.com")
    await run_worker(dkim_dns=dns)
    [event] = await CalendarEvent.select()
    assert (event["decision"], event["authenticated"]) == ("accepted", True)
    assert await Join.count() == 1


# --- item 4: a signature vouches only for its own organization, or as a calendar service ---

@pytest.mark.parametrize("signer, sender", [
    ("outlook.com", None),
    ("hotmail.com", None),
    ("outlook.com", GOOGLE_SENDER),  # Google's shape, without Google's signature
    ("google.com", None),            # Google's signature, without the calendar's shape
])
async def test_a_signature_from_elsewhere_does_not_authenticate_the_organizer(
        clean_db, inbound_smtp, smtp_sink, redis_queue, dkim_key, signer, sender):
    sign, dns = dkim_key
    await make_pal("acme-anna", ["boss@acme.com"])
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer="boss@acme.com")
    message = from_(message, f"Boss <attacker@{signer}>", sender=sender)
    with env(SENDER_AUTH="strict"):
        await deliver(inbound_smtp, sign(message, signer), sender=f"attacker@{signer}")
        await run_worker(dkim_dns=dns)
    assert await CalendarEvent.count() == 0 and await Join.count() == 0 and smtp_sink.messages == []


async def test_google_calendar_vouches_for_the_organizer_it_sends_for(clean_db, inbound_smtp, smtp_sink,
                                                                      redis_queue, dkim_key):
    sign, dns = dkim_key
    await make_pal("acme-anna", ["boss@acme.com"])
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer="boss@acme.com")
    message = from_(message, "Boss <boss@acme.com>", sender=GOOGLE_SENDER)
    with env(SENDER_AUTH="strict"):
        await deliver(inbound_smtp, sign(message, "google.com"), sender="bounce@calendar-server.bounces.google.com")
        await run_worker(dkim_dns=dns)
    [event] = await CalendarEvent.select()
    assert (event["decision"], event["authenticated"]) == ("accepted", True)
    assert [m[1] for m in smtp_sink.messages] == [["boss@acme.com"]]


# --- item 11: recipients per message ---------------------------------------------------

def _case_variant(address: str, n: int) -> str:
    """The n-th spelling of `address` in upper and lower case letters."""
    out, bit = [], 0
    for c in address:
        if c.isalpha():
            c, bit = (c.upper() if (n >> bit) & 1 else c), bit + 1
        out.append(c)
    return "".join(out)


async def test_a_thousand_rcpt_for_one_pal_ingest_once(clean_db, inbound_smtp, smtp_sink, redis_queue, dkim_key):
    sign, dns = dkim_key
    await make_pal("acme-anna", [".*@acme\\.com"])
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer="boss@acme.com")
    raw = sign(from_(message, "boss@acme.com", sender=GOOGLE_SENDER), "acme.com")
    rcpts = [_case_variant(PAL, i) for i in range(1000)]
    assert len(set(rcpts)) == 1000
    errors, _ = await deliver(inbound_smtp, raw, to=rcpts)
    assert errors == {}  # a repeated recipient is fine, it just does not count twice
    [row] = await InboundMessage.select()
    assert json_value(row["recipients"], []) == [PAL]
    await run_worker(dkim_dns=dns)
    result = json_value((await InboundMessage.select().first())["result"], {})
    assert len(result["outcomes"]) == 1
    assert await CalendarEvent.count() == 1 and len(smtp_sink.messages) == 1


async def test_recipients_past_the_cap_get_452(clean_db, inbound_smtp, smtp_sink, redis_queue):
    for name in ("pal-one", "pal-two", "pal-three"):
        await make_pal(name, [])
    to = [f"{n}@tavusinvite.com" for n in ("pal-one", "pal-two", "pal-three")]
    _, message = meeting(start_in=timedelta(days=1), pal_address=to[0])
    with env(SMTP_MAX_RECIPIENTS="2"):
        errors, _ = await deliver(inbound_smtp, message, to=[to[0], to[1], to[0].upper(), to[2]])
    assert list(errors) == [to[2]] and errors[to[2]].code == 452 and "many recipients" in errors[to[2]].message
    [row] = await InboundMessage.select()
    assert json_value(row["recipients"], []) == to[:2]


async def test_stored_recipients_are_deduplicated_for_the_webhook_too(clean_db, redis_queue):
    from app.services.inbound import store_message
    from datetime import datetime, timezone

    pk = await store_message(b"Subject: x\r\n\r\nx", envelope_from="", recipients=[PAL, PAL.upper(), f" {PAL} "],
                             source="webhook", now=datetime.now(timezone.utc))
    row = await InboundMessage.select().where(InboundMessage.id == pk).first()
    assert json_value(row["recipients"], []) == [PAL]


# --- item 12: the webhook is signed, with a replay window -----------------------------

SECRET = "whsec-test-1"


def signed(body: bytes, *, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    ts = str(int(time.time() if at is None else at))
    mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"x-webhook-timestamp": ts, "x-webhook-signature": f"v1={mac}"}


async def test_webhook_requires_a_fresh_signature(clean_db, client, redis_queue):
    await make_pal("acme-anna", [])
    _, message = meeting(start_in=timedelta(days=1), pal_address=PAL)
    raw = message.as_bytes()
    url = "/v2/inbound-email"
    with env(INBOUND_WEBHOOK_SECRET=SECRET, INBOUND_WEBHOOK_MAX_AGE_SECONDS=None):
        refused = {
            "missing": {},
            "static secret": {"x-webhook-secret": SECRET},
            "wrong secret": signed(raw, secret="guess"),
            "stale": signed(raw, at=time.time() - 301),
            "future": signed(raw, at=time.time() + 301),
            "not a number": {**signed(raw), "x-webhook-timestamp": "yesterday"},
            "other body": signed(raw + b"x"),
        }
        for why, headers in refused.items():
            response = await client.post(url, content=raw, headers=headers)
            assert response.status_code == 401, (why, response.text)
        assert "x-webhook-secret is no longer accepted" in (
            await client.post(url, content=raw, headers=refused["static secret"])).text
        assert "within 300 s" in (await client.post(url, content=raw, headers=refused["stale"])).text
        assert await InboundMessage.count() == 0

        ok = await client.post(url, content=raw, headers=signed(raw, at=time.time() - 250))
        assert ok.status_code == 202, ok.text
        good = signed(raw)
        rotating = {**good, "x-webhook-signature": "v1=" + "0" * 64 + ", " + good["x-webhook-signature"]}
        assert (await client.post(url, content=raw, headers=rotating)).status_code == 202
        assert (await client.post(url, content=b"", headers=signed(b""))).status_code == 400
        many = "&".join(f"to=p{i}@tavusinvite.com" for i in range(101))
        assert (await client.post(f"{url}?{many}", content=raw, headers=signed(raw))).status_code == 400
    with env(INBOUND_WEBHOOK_SECRET=SECRET, INBOUND_WEBHOOK_MAX_AGE_SECONDS="30"):
        assert (await client.post(url, content=raw, headers=signed(raw, at=time.time() - 60))).status_code == 401
    assert await InboundMessage.count() == 2
