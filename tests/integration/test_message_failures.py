"""Inbound messages that cannot be ingested end, recorded as such, and are never retried again.

A PAL deleted while its invitation is being ingested, and a message that fails on every
attempt, with real PostgreSQL and Redis, driven the way the worker and the requeue cron do.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest

from app.services import invites
from app.services import pals as pal_service
from app.services.accounts import create_account
from app.services.inbound import requeue_unprocessed, store_message
from app.services.invites import process_inbound
from app.tables import CalendarEvent, InboundMessage, Pal
from tests.fixtures import run_worker
from tests.invite_factory import meeting
from workers.mail import ingest_message

FACE = "r90bbd427f71"
ANNA = "acme-anna@tavusinvite.com"
BOB = "acme-bob@tavusinvite.com"


async def _pal(account_id: int, name: str, username: str) -> dict:
    return await pal_service.create_pal(account_id, {
        "pal_name": name, "default_face_id": FACE,
        "layers": {"conferencing": {"username": username, "allowlist": [".*@acme\\.com"]}},
    })


@pytest.fixture
async def pals(clean_db, redis_queue):
    account, _ = await create_account("acme")
    return {"anna": await _pal(account.id, "Anna", "acme-anna"), "bob": await _pal(account.id, "Bob", "acme-bob")}


async def _store(recipients: list[str], now: datetime) -> int:
    _, message = meeting(start_in=timedelta(days=1), pal_address=recipients[0], now=now)
    return await store_message(message.as_bytes(), envelope_from="alex@acme.com", recipients=recipients,
                               source="smtp", now=now)


async def _row(pk: int) -> dict:
    return await InboundMessage.select().where(InboundMessage.id == pk).first()


def _delete_after_lookup(monkeypatch, doomed: set[str]) -> None:
    """The PAL is found, then deleted before its invite is saved: the race the issue describes."""
    real = invites.find_pal_by_address

    async def lookup_then_delete(address: str):
        pal = await real(address)
        if pal is not None and address in doomed:
            await Pal.delete().where(Pal.id == pal["id"])
        return pal

    monkeypatch.setattr(invites, "find_pal_by_address", lookup_then_delete)


async def test_pal_deleted_between_storing_and_ingesting_ends_the_message(pals, caplog):
    now = datetime.now(timezone.utc)
    pk = await _store([ANNA], now)
    await Pal.delete().where(Pal.pal_id == pals["anna"]["pal_id"])
    caplog.set_level(logging.INFO, logger="app.services.invites")

    await ingest_message({"clock": lambda: now}, pk)

    row = await _row(pk)
    assert (row["status"], row["reason"]) == ("failed", "recipients_gone")
    assert row["failed_at"] == now and row["attempts"] == 1
    lines = [r for r in caplog.records if r.name == "app.services.invites" and f"message {pk} " in r.getMessage()]
    assert len(lines) == 1 and "recipients_gone" in lines[0].getMessage()
    # Ended: the cron never hands it out again, and a stray job changes nothing.
    assert await requeue_unprocessed(now + timedelta(minutes=5)) == 0
    assert await process_inbound(pk, now=now + timedelta(minutes=6)) == {"skipped": True}
    assert (await _row(pk))["attempts"] == 1


def _delete_before_announcing(monkeypatch) -> None:
    """Later in the window: the event is saved (and committed), then the PAL goes."""
    real = invites._announce

    async def delete_then_announce(pal, *args, **kwargs):
        await Pal.delete().where(Pal.id == pal["id"])
        return await real(pal, *args, **kwargs)

    monkeypatch.setattr(invites, "_announce", delete_then_announce)


@pytest.mark.parametrize("stage", ["after_lookup", "before_announce"])
async def test_pal_deleted_during_ingestion_ends_the_message_without_retry(pals, monkeypatch, stage):
    now = datetime.now(timezone.utc)
    pk = await _store([ANNA], now)
    if stage == "after_lookup":
        _delete_after_lookup(monkeypatch, {ANNA})
    else:
        _delete_before_announcing(monkeypatch)

    result = await ingest_message({"clock": lambda: now}, pk)  # no ForeignKeyViolationError

    row = await _row(pk)
    assert (row["status"], row["reason"]) == ("failed", "recipients_gone")
    assert result["outcomes"] == [{"recipient": ANNA, "ignored": "PAL deleted during ingestion"}]
    assert await CalendarEvent.count() == 0
    for minutes in (3, 4, 60, 24 * 60):  # every later cron tick, in this run and later ones
        assert await requeue_unprocessed(now + timedelta(minutes=minutes)) == 0
    assert (await _row(pk))["attempts"] == 1


async def test_other_recipients_still_get_the_invite_when_one_pal_is_deleted(pals, monkeypatch):
    now = datetime.now(timezone.utc)
    pk = await _store([ANNA, BOB], now)
    _delete_after_lookup(monkeypatch, {ANNA})

    result = await ingest_message({"clock": lambda: now}, pk)

    row = await _row(pk)
    assert row["status"] == "processed" and row["reason"] is None and row["last_error"] is None
    by_recipient = {o["recipient"]: o for o in result["outcomes"]}
    assert by_recipient[ANNA] == {"recipient": ANNA, "ignored": "PAL deleted during ingestion"}
    assert by_recipient[BOB]["decision"] == "accepted"
    stored = await CalendarEvent.select(CalendarEvent.pal.pal_id)
    assert [s["pal.pal_id"] for s in stored] == [pals["bob"]["pal_id"]]
    assert await requeue_unprocessed(now + timedelta(minutes=5)) == 0


async def test_a_message_failing_every_attempt_ends_failed_with_its_last_error(pals, monkeypatch, caplog):
    monkeypatch.delenv("MAX_INGEST_ATTEMPTS", raising=False)
    from app.config import reset_settings

    reset_settings()
    calls = []

    async def broken_lookup(address: str):
        calls.append(address)
        raise RuntimeError(f"lookup failed (injected) #{len(calls)} " + "x" * 1500)

    monkeypatch.setattr(invites, "find_pal_by_address", broken_lookup)
    start = datetime.now(timezone.utc)
    pk = await _store([ANNA], start)

    await run_worker(clock=lambda: start)  # the first delivery, then one requeue a minute
    assert (await _row(pk))["status"] == "pending"
    minute = 3
    while (await _row(pk))["status"] == "pending":
        assert minute < 20, "still retried after 17 cron ticks"
        tick = start + timedelta(minutes=minute)
        assert await requeue_unprocessed(tick) == 1
        await run_worker(clock=lambda: tick)
        minute += 1

    row = await _row(pk)
    assert (row["status"], row["reason"], row["attempts"]) == ("failed", "max_attempts", 5)
    assert len(calls) == 5
    assert row["last_error"].startswith("RuntimeError: lookup failed (injected) #5 ")
    assert len(row["last_error"]) <= 1000
    assert row["failed_at"] == start + timedelta(minutes=minute - 1)
    assert sum("max_attempts" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records) == 1
    # Never again: not in this run of the service, not in a later one.
    for later in (1, 2, 60, 24 * 60):
        assert await requeue_unprocessed(start + timedelta(minutes=minute + later)) == 0
    await run_worker(clock=lambda: start + timedelta(days=1))
    assert len(calls) == 5 and (await _row(pk))["attempts"] == 5


async def test_max_ingest_attempts_is_configurable(pals, monkeypatch):
    from app.config import reset_settings

    monkeypatch.setenv("MAX_INGEST_ATTEMPTS", "2")
    reset_settings()
    try:
        async def broken_lookup(address: str):
            raise ConnectionError("injected")

        monkeypatch.setattr(invites, "find_pal_by_address", broken_lookup)
        now = datetime.now(timezone.utc)
        pk = await _store([ANNA], now)
        with pytest.raises(ConnectionError):
            await ingest_message({"clock": lambda: now}, pk)
        row = await _row(pk)
        assert (row["status"], row["attempts"], row["last_error"]) == ("pending", 1, "ConnectionError: injected")
        assert await requeue_unprocessed(now + timedelta(minutes=3)) == 1
        await ingest_message({"clock": lambda: now}, pk)  # the last attempt ends it instead of raising
        row = await _row(pk)
        assert (row["status"], row["reason"], row["attempts"]) == ("failed", "max_attempts", 2)
        assert await requeue_unprocessed(now + timedelta(minutes=4)) == 0
    finally:
        monkeypatch.delenv("MAX_INGEST_ATTEMPTS")
        reset_settings()


async def test_attempts_that_never_finished_end_the_message_at_the_cron(pals):
    """A worker killed (or a job timed out) mid-ingest records no error; the cron still ends it."""
    now = datetime.now(timezone.utc)
    pk = await _store([ANNA], now)
    await InboundMessage.update({InboundMessage.attempts: 5}).where(InboundMessage.id == pk)
    assert await requeue_unprocessed(now + timedelta(minutes=3)) == 0
    row = await _row(pk)
    assert (row["status"], row["reason"]) == ("failed", "max_attempts")
    assert row["last_error"] and row["failed_at"] == now + timedelta(minutes=3)
    assert await requeue_unprocessed(now + timedelta(minutes=4)) == 0
