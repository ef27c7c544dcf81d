"""Webhook deliveries end to end: PAL events → deliveries rows → signed POSTs to real receivers on
127.0.0.1, every signature checked with the `standardwebhooks` library. Time for backoff and the
3-day rule is injected (`now`); nothing waits for real beyond a receiver's short timeouts."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from app.clock import utcnow
from app.config import reset_settings
from app.services import deliveries
from app.services import pals as pal_service
from app.services import webhooks as webhook_service
from app.services.accounts import create_account
from app.services.events import record_event
from app.tables import Conversation, Delivery, PalEvent, WebhookEndpoint
from tests.webhook_receiver import Receiver


@pytest.fixture
def allow_loopback(monkeypatch):
    monkeypatch.setenv("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    reset_settings()
    yield
    monkeypatch.undo()
    reset_settings()


@pytest.fixture
async def receiver():
    r = await Receiver().start()
    yield r
    await r.stop()


@pytest.fixture
async def account(clean_db):
    ref, _ = await create_account("acme")
    return ref.id


async def make_pal(account_id: int, name: str) -> dict:
    view = await pal_service.create_pal(account_id, {"pal_name": name, "default_face_id": "r90bbd427f71"})
    row = await pal_service.owned_pal_pk(account_id, view["pal_id"])
    return {"pk": row, "pal_id": view["pal_id"]}


async def subscribe(account_id: int, receiver: Receiver, **extra) -> dict:
    view = await webhook_service.create_webhook(account_id, {"url": receiver.url, **extra}, utcnow())
    receiver.secrets.append(view["secret"])
    return view


async def join_events(pal: dict, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        await record_event(pal["pk"], "join_scheduled", {"join_id": 1000 + i, "meeting_url": "https://meet.google.com/abc-defg-hij"},
                           pal_id=pal["pal_id"])


async def test_an_event_arrives_signed_with_the_public_type_and_api_ids(account, receiver, allow_loopback):
    pal = await make_pal(account, "Anna")
    await subscribe(account, receiver)
    await record_event(pal["pk"], "in_call", {"join_id": 7, "status": "in_call", "reason": None,
                                              "meeting_url": "https://meet.google.com/abc-defg-hij"},
                       pal_id=pal["pal_id"])
    await record_event(pal["pk"], "join_stop_requested", {"join_id": 7}, pal_id=pal["pal_id"])  # not public
    assert await deliveries.run_due(utcnow()) == 1
    [got] = receiver.received
    assert got.verified and got.path == "/hooks"
    body = got.payload
    assert body["type"] == "join.in_call" and body["timestamp"].endswith("Z")
    assert body["data"] == {"pal_id": pal["pal_id"], "join_id": 7, "status": "in_call", "reason": None,
                            "meeting_url": "https://meet.google.com/abc-defg-hij", "conversation_id": None}
    row = await Delivery.select().where(Delivery.kind == "webhook").first()
    assert got.message_id == row["delivery_id"] and row["status"] == "sent" and row["attempts"] == 1


async def test_event_types_filter_and_transcript_is_opt_in(account, receiver, allow_loopback):
    from app.services.transcripts import append

    pal = await make_pal(account, "Anna")
    everything = await Receiver().start()
    try:
        await subscribe(account, everything)  # no event_types: all but the transcript
        await subscribe(account, receiver, event_types=["conversation.transcript", "reply.sent"])
        [conv] = await Conversation.insert(Conversation(
            conversation_id="ctest1", account=account, pal=pal["pk"], face_id="r90bbd427f71",
            meeting_url="https://meet.google.com/abc-defg-hij", created_at=utcnow())).returning(Conversation.id)
        await append(conv["id"], "speech", "Alex", "hello there", at=utcnow(), now=utcnow())
        await record_event(pal["pk"], "reply_sent", {"to": "a@b.c", "key": "k"}, pal_id=pal["pal_id"])
        await record_event(pal["pk"], "invite_received", {"event_id": 3, "uid": "u"}, pal_id=pal["pal_id"])
        await deliveries.run_due(utcnow())
        assert [r.payload["type"] for r in receiver.received] == ["conversation.transcript", "reply.sent"]
        assert [r.payload["type"] for r in everything.received] == ["reply.sent", "invite.received"]
        transcript = receiver.received[0].payload["data"]
        assert transcript["conversation_id"] == "ctest1" and transcript["text"] == "hello there"
        assert "key" not in receiver.received[1].payload["data"]  # internal fields stay inside
        assert all(r.verified for r in receiver.received + everything.received)
    finally:
        await everything.stop()


async def test_a_failing_receiver_gets_everything_in_order_per_pal(account, receiver, allow_loopback):
    receiver.mode, receiver.fail_first = "fail", 3
    anna, bob = await make_pal(account, "Anna"), await make_pal(account, "Bob")
    await subscribe(account, receiver)
    await join_events(anna, 4)
    await join_events(bob, 2, start=10)
    now = utcnow()
    for step in range(12):
        await deliveries.run_due(now + timedelta(minutes=10 * step))
    delivered = [r for r in receiver.received[3:]]
    assert len(receiver.received) == 3 + 6 and all(r.verified for r in receiver.received)
    by_pal: dict[str, list[int]] = {}
    for r in delivered:
        by_pal.setdefault(r.payload["data"]["pal_id"], []).append(r.payload["data"]["join_id"])
    assert by_pal == {anna["pal_id"]: [1000, 1001, 1002, 1003], bob["pal_id"]: [1010, 1011]}
    rows = await Delivery.select(Delivery.status, Delivery.attempts).where(Delivery.kind == "webhook")
    assert all(r["status"] == "sent" for r in rows) and sum(r["attempts"] for r in rows) == 9


async def test_a_later_event_waits_while_the_earlier_one_is_retried(account, receiver, allow_loopback):
    receiver.mode, receiver.fail_first = "fail", 1
    anna = await make_pal(account, "Anna")
    await subscribe(account, receiver)
    await join_events(anna, 2)
    now = utcnow()
    await deliveries.run_due(now)  # the first fails; the second must not overtake it
    assert [r.payload["data"]["join_id"] for r in receiver.received] == [1000]
    first = await Delivery.select().order_by(Delivery.id).first()
    assert first["status"] == "pending" and first["attempts"] == 1 and first["last_status"] == 500
    # Exponential backoff with jitter: 5 s for the first retry, jittered into [2.5, 5] s.
    assert timedelta(seconds=2.5) <= first["next_attempt_at"] - now <= timedelta(seconds=5)
    await deliveries.run_due(now + timedelta(seconds=1))
    assert len(receiver.received) == 1
    await deliveries.run_due(now + timedelta(seconds=6))
    assert [r.payload["data"]["join_id"] for r in receiver.received] == [1000, 1000, 1001]


async def test_a_hanging_receiver_times_out(account, receiver, allow_loopback, monkeypatch):
    assert webhook_service.WEBHOOK.timeout == 10.0  # the production bound
    monkeypatch.setattr(webhook_service.WEBHOOK, "timeout", 0.5)
    receiver.mode = "hang"
    anna = await make_pal(account, "Anna")
    await subscribe(account, receiver)
    await join_events(anna, 1)
    start = time.monotonic()
    assert await deliveries.run_due(utcnow()) == 0
    assert time.monotonic() - start < 3
    row = await Delivery.select().first()
    assert row["status"] == "pending" and "timed out after 0.5 s" in row["last_error"]


async def test_a_redirect_is_not_followed_and_counts_as_a_failure(account, receiver, allow_loopback):
    receiver.mode = "redirect"
    anna = await make_pal(account, "Anna")
    await subscribe(account, receiver)
    await join_events(anna, 1)
    assert await deliveries.run_due(utcnow()) == 0
    assert [r.path for r in receiver.received] == ["/hooks"]  # /elsewhere never asked
    row = await Delivery.select().first()
    assert row["status"] == "pending" and row["last_status"] == 302 and "not followed" in row["last_error"]


async def test_a_huge_response_is_not_read_past_64_kib(account, receiver, allow_loopback, monkeypatch):
    # The body never ends: reading it all would run into the timeout and fail the delivery.
    monkeypatch.setattr(webhook_service.WEBHOOK, "timeout", 2.0)
    receiver.mode = "huge"
    anna = await make_pal(account, "Anna")
    await subscribe(account, receiver)
    await join_events(anna, 1)
    start = time.monotonic()
    assert await deliveries.run_due(utcnow()) == 1
    assert time.monotonic() - start < 1.5
    assert (await Delivery.select().first())["status"] == "sent"


async def test_loopback_is_refused_without_the_allow_list(account, receiver, monkeypatch):
    monkeypatch.delenv("WEBHOOK_ALLOWED_HOSTS", raising=False)
    reset_settings()
    anna = await make_pal(account, "Anna")
    await subscribe(account, receiver)
    await join_events(anna, 1)
    assert await deliveries.run_due(utcnow()) == 0
    assert receiver.received == []
    row = await Delivery.select().first()
    assert "refused" in row["last_error"] and "loopback" in row["last_error"]
    assert "WEBHOOK_ALLOWED_HOSTS" in row["last_error"]


async def test_three_days_of_failure_mark_the_endpoint_and_replay_recovers(account, receiver, allow_loopback,
                                                                          client, api_key):
    receiver.mode, receiver.fail_first = "fail", 10**6
    anna = await make_pal(account, "Anna")
    hook = await subscribe(account, receiver)
    await join_events(anna, 1)
    now = utcnow()
    t = now
    while t < now + timedelta(days=3, hours=2):
        await deliveries.run_due(t)
        t += timedelta(hours=1)
    row = await Delivery.select().first()
    assert row["status"] == "failed" and row["attempts"] >= 70
    endpoint = await WebhookEndpoint.select().first()
    assert endpoint["failing"] and endpoint["failing_since"] is not None
    [event] = await PalEvent.select().where(PalEvent.kind == "webhook_failing")
    assert event["pal"] == anna["pk"]
    assert '"newly_failing": true' in event["payload"] and hook["webhook_id"] in event["payload"]
    # Nothing is dropped: listed as failed (the API shows failing), replayable by id.
    view = await webhook_service.list_deliveries(account, hook["webhook_id"], status="failed")
    assert [d["delivery_id"] for d in view.items] == [row["delivery_id"]]
    assert (await webhook_service.get_webhook(account, hook["webhook_id"]))["failing"] is True
    receiver.mode = "ok"
    replayed = await webhook_service.replay_delivery(account, hook["webhook_id"], row["delivery_id"], t)
    assert replayed["status"] == "pending"
    assert await deliveries.run_due(t) == 1
    assert receiver.received[-1].message_id == row["delivery_id"] and receiver.received[-1].verified
    assert (await webhook_service.get_webhook(account, hook["webhook_id"]))["failing"] is False


async def test_rotation_signs_with_both_secrets_for_24_hours(account, receiver, allow_loopback):
    from standardwebhooks import Webhook, WebhookVerificationError

    anna = await make_pal(account, "Anna")
    hook = await subscribe(account, receiver)
    old = hook["secret"]
    now = utcnow()
    new = (await webhook_service.rotate_secret(account, hook["webhook_id"], now))["secret"]
    assert new != old and new.startswith("whsec_")
    await join_events(anna, 1)
    await deliveries.run_due(now + timedelta(hours=23))
    await join_events(anna, 1, start=1)
    await deliveries.run_due(now + timedelta(hours=25))
    during, after = receiver.received
    for secret in (old, new):
        Webhook(secret).verify(during.body, during.headers)  # either secret verifies during the overlap
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)


async def test_two_workers_never_send_one_delivery(account, receiver, allow_loopback):
    pals = [await make_pal(account, f"P{i}") for i in range(8)]
    await subscribe(account, receiver)
    for pal in pals:
        await join_events(pal, 5)
    now = utcnow()
    sent = await asyncio.gather(*(deliveries.run_due(now) for _ in range(4)))
    assert sum(sent) == 40
    ids = [r.message_id for r in receiver.received]
    assert len(ids) == 40 and len(set(ids)) == 40 and all(r.verified for r in receiver.received)


async def test_replies_and_webhooks_are_rows_of_one_outbox(account, receiver, allow_loopback, smtp_sink):
    from email.message import EmailMessage

    from app.services.outbox import enqueue_email

    anna = await make_pal(account, "Anna")
    await subscribe(account, receiver, event_types=["reply.sent"])
    message = EmailMessage()
    message["Subject"] = "Accepted"
    message.set_content("yes")
    assert await enqueue_email(pal_pk=anna["pk"], dedupe_key="k1", mail_from="a@x.com", rcpt_to="b@y.com",
                               message=message, now=utcnow())
    assert not await enqueue_email(pal_pk=anna["pk"], dedupe_key="k1", mail_from="a@x.com", rcpt_to="b@y.com",
                                   message=message, now=utcnow())  # the dedupe key holds
    # The reply (through the SMTP relay), then the reply.sent webhook it caused: recorded after
    # the run started, it is due in the same run's next round or in the next run.
    assert await deliveries.run_due(utcnow()) + await deliveries.run_due(utcnow()) == 2
    assert len(smtp_sink.messages) == 1
    [hook] = receiver.received
    assert hook.payload["type"] == "reply.sent" and hook.payload["data"]["to"] == "b@y.com" and hook.verified
    assert sorted(r["kind"] for r in await Delivery.select(Delivery.kind)) == ["email", "webhook"]


async def test_a_worker_killed_mid_send_loses_nothing_and_duplicates_at_most_one(account, receiver,
                                                                                   allow_loopback, redis_queue):
    """The real worker process (python -m app worker) sends; it is SIGKILLed while a request is
    in flight. Afterwards every event is delivered, in order, and only that one twice."""
    receiver.mode = "block"
    anna = await make_pal(account, "Anna")
    await subscribe(account, receiver)
    await join_events(anna, 5)
    env = {**os.environ, "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
    worker = subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.wait_for(receiver.arrived.wait(), 30)  # the first request is in flight, held
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    receiver.mode = "ok"
    receiver.release.set()
    assert [r.payload["data"]["join_id"] for r in receiver.received] == [1000]
    rows = await Delivery.select().order_by(Delivery.id)
    assert all(r["status"] == "pending" for r in rows) and rows[0]["lease_until"] is not None
    # Nothing is sent again before the dead worker's lease ends; then everything is.
    assert await deliveries.run_due(utcnow()) == 0
    assert await deliveries.run_due(utcnow() + deliveries.LEASE + timedelta(seconds=1)) == 5
    ids = [r.message_id for r in receiver.received]
    assert [r.payload["data"]["join_id"] for r in receiver.received] == [1000, 1000, 1001, 1002, 1003, 1004]
    assert len(ids) - len(set(ids)) == 1 and all(r.verified for r in receiver.received)


async def test_a_worker_stopped_with_sigterm_finishes_what_it_is_sending(account, receiver, allow_loopback, redis_queue):
    """A restart (SIGTERM) lets the request in flight end and records it: nothing stays leased.
    (redis_queue: an empty queue, so no job left by an earlier test keeps the worker busy.)"""
    receiver.mode = "block"
    anna = await make_pal(account, "Anna")
    await subscribe(account, receiver)
    await join_events(anna, 1)
    env = {**os.environ, "WEBHOOK_ALLOWED_HOSTS": "127.0.0.1"}
    worker = subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    exited_in = None
    try:
        await asyncio.wait_for(receiver.arrived.wait(), 30)
        worker.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.3)
        receiver.release.set()  # the receiver answers only now, after the signal
        start = time.monotonic()
        for _ in range(300):
            if worker.poll() is not None:
                exited_in = time.monotonic() - start
                break
            await asyncio.sleep(0.1)
    finally:
        if worker.poll() is None:
            worker.kill()
        _, err = worker.communicate(timeout=10)
    row = await Delivery.select().first()
    tail = err.decode(errors="replace")[-3000:]
    assert exited_in is not None, f"the worker did not exit within 30 s of SIGTERM:\n{tail}"
    assert row["status"] == "sent" and row["lease_until"] is None and len(receiver.received) == 1, (row, tail)


def _certificate(tmp_path, name: str) -> tuple[str, str]:
    """A self-signed certificate for `name` (its own authority): (cert file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = utcnow()
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_file), str(key_file)


@pytest.mark.parametrize("served_name, delivered", [("hooks.test", True), ("other.test", False)])
async def test_https_goes_to_the_checked_address_and_verifies_the_host_name(
        account, tmp_path, monkeypatch, served_name, delivered):
    """The request is sent to the resolved, checked address, yet TLS still checks the URL's host
    name (SNI + certificate): a certificate for another name fails the delivery."""
    import ssl

    monkeypatch.setenv("WEBHOOK_ALLOWED_HOSTS", "hooks.test")
    reset_settings()
    cert, key = _certificate(tmp_path, served_name)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    receiver = await Receiver(host="hooks.test", tls=server_tls).start()
    trust = ssl.create_default_context(cafile=cert)
    looked_up: list[str] = []

    async def resolver(host: str, port: int):  # hooks.test is this machine (no DNS in tests)
        looked_up.append(host)
        return [(2, 1, 6, "", ("127.0.0.1", port))]

    monkeypatch.setattr(webhook_service.WEBHOOK, "resolver", resolver)
    monkeypatch.setattr(webhook_service.WEBHOOK, "clients", webhook_service.Clients(verify=trust))
    try:
        anna = await make_pal(account, "Anna")
        await subscribe(account, receiver)
        await join_events(anna, 1)
        assert await deliveries.run_due(utcnow()) == int(delivered)
        row = await Delivery.select().first()
        assert looked_up == ["hooks.test"]
        if delivered:
            [got] = receiver.received
            assert got.verified and got.headers["host"] == f"hooks.test:{receiver.port}"
        else:
            assert receiver.received == [] and "certificate" in row["last_error"].lower()
    finally:
        await receiver.stop()
        monkeypatch.undo()
        reset_settings()
