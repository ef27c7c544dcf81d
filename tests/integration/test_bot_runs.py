"""Bot runs against real PostgreSQL and Redis: lease before claim, fenced writes, recovery exactly once."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from app.keys import ARQ_QUEUE, bot_lease_key, join_job_id
from app.redis_client import redis
from app.services import bot_runs
from app.services import pals as pal_service
from app.services.accounts import create_account
from app.services.conversations import create_conversation
from app.tables import Join, JoinStatusChange

URL = "https://meet.google.com/abc-defg-hij"


@pytest.fixture
async def join_pk(clean_db, redis_queue) -> int:
    account, _ = await create_account("acme")
    pal = await pal_service.create_pal(account.id, {"pal_name": "Anna", "default_face_id": "r90bbd427f71"})
    conversation = await create_conversation(account.id, {"pal_id": pal["pal_id"], "meeting_url": URL},
                                             now=datetime.now(timezone.utc))
    return conversation["join_id"]


def now() -> datetime:
    return datetime.now(timezone.utc)


async def row(join_pk: int) -> dict:
    return await Join.select().where(Join.id == join_pk).first()


async def lease(join_pk: int) -> str | None:
    value = await redis().get(bot_lease_key(join_pk))
    return value.decode() if value else None


async def queued(redis_queue, join_pk: int, version: int) -> bool:
    return await redis_queue.zscore(ARQ_QUEUE, join_job_id(join_pk, version)) is not None


async def test_claim_takes_the_lease_with_the_join_and_loads_what_the_bot_needs(join_pk):
    run = await bot_runs.claim(join_pk, 1, now=now(), holder="test:1")
    assert run is not None
    assert (await row(join_pk))["status"] == "dispatching"
    assert await lease(join_pk) == run.token and run.token.startswith("test:1/")
    assert (run.pal_name, run.face_id, run.meeting_url, run.platform) == ("Anna", "r90bbd427f71", URL, "google_meet")
    # A fresh claim is never taken for a lost bot, however young or old its row.
    assert await bot_runs.recover_lost_bots(now() + timedelta(minutes=5)) == 0
    assert (await row(join_pk))["status"] == "dispatching"


async def test_stale_job_and_held_lease(join_pk):
    assert await bot_runs.claim(join_pk, 7, now=now(), holder="test:1") is None  # another plan version
    await redis().set(bot_lease_key(join_pk), "previous-run", px=5000)
    with pytest.raises(bot_runs.LeaseHeld):
        await bot_runs.claim(join_pk, 1, now=now(), holder="test:1")
    assert (await row(join_pk))["status"] == "scheduled"  # not claimed: it will be retried
    assert await lease(join_pk) == "previous-run"


async def test_lost_worker_is_redispatched_once_and_its_run_is_fenced_off(join_pk, redis_queue):
    old = await bot_runs.claim(join_pk, 1, now=now(), holder="dead:1")
    assert await bot_runs.record_status(old, "in_call", None, now=now())
    await redis().delete(bot_lease_key(join_pk))  # the lease expired: its worker died

    assert await bot_runs.recover_tick(now()) == {"bots_recovered": 1}
    recovered = await row(join_pk)
    assert (recovered["status"], recovered["plan_version"]) == ("scheduled", 2)
    assert recovered["reason"] == bot_runs.REDISPATCHED
    assert await queued(redis_queue, join_pk, 2)
    assert await bot_runs.recover_lost_bots(now()) == 0  # exactly once

    # The lost run, should it come back, can neither keep the join nor write to it.
    assert await bot_runs.renew_lease(old) is False
    assert await bot_runs.stop_requested(old) is True
    assert await bot_runs.record_status(old, "left", "stopped", now=now()) is False
    assert await bot_runs.hand_back(old, now=now()) is False
    new = await bot_runs.claim(join_pk, 2, now=now(), holder="live:2")
    assert new is not None and await lease(join_pk) == new.token
    await bot_runs.release(old)  # never releases someone else's lease
    assert await lease(join_pk) == new.token


async def test_lost_worker_after_the_meeting_ended_fails_the_join(join_pk):
    run = await bot_runs.claim(join_pk, 1, now=now(), holder="dead:1")
    await Join.update({Join.end_at: now() - timedelta(minutes=1)}).where(Join.id == join_pk)
    await redis().delete(bot_lease_key(run.join_pk))
    assert await bot_runs.recover_lost_bots(now()) == 0
    assert ((await row(join_pk))["status"], (await row(join_pk))["reason"]) == ("failed", "worker_lost")


async def test_finish_records_the_end_before_the_lease_goes(join_pk):
    run = await bot_runs.claim(join_pk, 1, now=now(), holder="test:1")
    assert await bot_runs.finish(run, "left", "meeting_ended", now=now())
    assert await lease(join_pk) is None
    assert await bot_runs.recover_lost_bots(now()) == 0
    assert ((await row(join_pk))["status"], (await row(join_pk))["reason"]) == ("left", "meeting_ended")


async def test_hand_back_then_recovery_gives_one_new_run(join_pk, redis_queue):
    run = await bot_runs.claim(join_pk, 1, now=now(), holder="test:1")
    assert await bot_runs.hand_back(run, now=now())
    assert await lease(join_pk) is None
    assert await bot_runs.recover_lost_bots(now()) == 0
    assert ((await row(join_pk))["status"], (await row(join_pk))["plan_version"]) == ("scheduled", 2)
    assert await queued(redis_queue, join_pk, 2)


async def test_redis_losing_the_lease_does_not_end_a_live_run(join_pk):
    run = await bot_runs.claim(join_pk, 1, now=now(), holder="test:1")
    await redis().delete(bot_lease_key(join_pk))  # Redis restarted empty
    assert await bot_runs.renew_lease(run) is True
    assert await lease(join_pk) == run.token


async def test_a_run_whose_lease_is_taken_stops_its_bot(join_pk, monkeypatch):
    monkeypatch.setattr(bot_runs, "RENEW_SECONDS", 0.05)
    run = await bot_runs.claim(join_pk, 1, now=now(), holder="test:1")
    lost, stop = asyncio.Event(), asyncio.Event()
    keeper = asyncio.create_task(bot_runs.keep_lease(run, lost=lost, stop=stop))
    await asyncio.sleep(0.2)
    assert not lost.is_set()
    await redis().set(bot_lease_key(join_pk), "someone-else")
    await asyncio.wait_for(keeper, 2)
    assert lost.is_set() and stop.is_set()


async def test_a_join_on_a_platform_without_a_bot_fails_with_a_clear_reason(join_pk):
    from workers.joins import run_join
    from workers.meet_bot.slots import BotSlots

    await Join.update({Join.meeting_url: "https://zoom.us/j/123456789"}).where(Join.id == join_pk)
    assert await run_join({"bot_slots": BotSlots(1)}, join_pk, 1) == "failed:unsupported_platform"
    final = await row(join_pk)
    assert (final["status"], final["reason"]) == ("failed", "unsupported_platform")
    assert await lease(join_pk) is None
    history = await JoinStatusChange.select(JoinStatusChange.status).where(JoinStatusChange.join == join_pk).order_by(
        JoinStatusChange.id)
    assert [h["status"] for h in history] == ["scheduled", "dispatching", "failed"]


async def test_a_job_finding_the_previous_run_still_leaving_retries_later(join_pk):
    from arq import Retry

    from workers.joins import run_join
    from workers.meet_bot.slots import BotSlots

    await redis().set(bot_lease_key(join_pk), "previous-run", px=5000)
    with pytest.raises(Retry):
        await run_join({"bot_slots": BotSlots(1)}, join_pk, 1)
    assert (await row(join_pk))["status"] == "scheduled"
