"""One bot's run of one join, as the worker needs it: claim, lease, what to show, when to stop, how it ended.

The worker (workers/joins.py) only calls these functions and a bot; every read and write
of joins goes through here, and every status change through app.services.joins.set_status.

**The lease** (``bot_lease_key`` in Redis) is the permission to have a bot in a join's
meeting, and a short one, so that a worker killed mid-call is noticed within seconds:

* it is taken (SET NX) *before* the join is claimed in PostgreSQL, so an active join
  without a lease means its worker died (or Redis lost the key): recovery can never
  take a freshly claimed join from the run that is starting it;
* it holds a token of its own run and is renewed (every ``RENEW_SECONDS``) only while it
  still holds that token; a missing key (Redis restarted) is taken back only while
  PostgreSQL still says this run owns the join. A run that lost its lease stops its bot
  and hands the join back; it can never take the lease from the run that replaced it;
* a run that cannot renew in time (Redis unreachable) stops its bot before the lease
  runs out, so the next run never shares the meeting with it;
* every status a run writes is fenced by its ``plan_version``, and recovery (and a
  hand-back) bump that version, so a stale run, its job and its writes are all ignored;
* a new run waits (``LeaseHeld``) while another run of the same join still holds the lease.

**Recovery** (``recover_lost_bots``, a cron every ``RECOVER_EVERY_SECONDS``) re-dispatches
each active join whose lease is gone, or marks it failed (``worker_lost``) when its
meeting is over. Kill-to-back-in-call is lease expiry (<= ``LEASE_SECONDS``) + one
recovery period + a bot's join time; bench/rejoin_bench.py measures it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from app.config import get_settings
from app.db import engine
from app.domain.face_media import FaceMedia
from app.domain.ids import new_public_id
from app.domain.join_state import ACTIVE, FailReason, JoinStatus, RequeueReason
from app.domain.meeting_links import classify_url
from app.domain.platforms import Platform
from app.keys import RECOVER_LOCK, bot_lease_key
from app.redis_client import redis
from app.services.joins import schedule_job, set_status
from app.tables import Conversation, Face, Join, Pal

log = logging.getLogger(__name__)

LEASE_SECONDS = 9.0
RENEW_SECONDS = 3.0
# A run that has not renewed for this long stops its bot: the lease may be gone by the
# time another renewal could land, and the next run must not share the meeting with it.
RENEW_DEADLINE_SECONDS = LEASE_SECONDS - RENEW_SECONDS
STOP_POLL_SECONDS = 2.0
RECOVER_EVERY_SECONDS = 3
# A recovery tick takes milliseconds; a worker killed during one must not block the next for long.
RECOVER_LOCK_SECONDS = 10

# Reasons this module writes (app/domain/join_state.py).
REDISPATCHED = RequeueReason.WORKER_LOST
WORKER_RESTARTED = RequeueReason.WORKER_RESTARTED
LEASE_LOST = RequeueReason.LEASE_LOST

_OWNED = (JoinStatus.DISPATCHING, JoinStatus.JOINING, JoinStatus.WAITING_ROOM, JoinStatus.IN_CALL)

# 1: renewed; 0: the key is missing; -1: another run holds it.
_RENEW = """
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
if not v then return 0 end
return -1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaseHeld(Exception):
    """Another run of this join still holds its lease; try again in a few seconds."""


class AccountBusy(Exception):
    """The join's account already has MAX_BOTS_PER_ACCOUNT bots running; try again soon."""

# Key space of the advisory lock that serialises claims of one account's joins.
_ACCOUNT_CLAIM_LOCK = 0x5041_4C42  # "PALB"


@dataclass(frozen=True)
class BotRun:
    """A claimed join and what its bot needs; ``plan_version`` and ``token`` fence this run."""

    join_pk: int
    plan_version: int
    token: str
    pal_pk: int
    pal_name: str
    face_id: str | None
    meeting_url: str
    platform: str
    end_at: datetime | None
    leave_at: datetime | None
    # The run's conversation (media bridge: transcript, stream channels); every claimed join has one.
    conversation_pk: int | None = None
    conversation_id: str | None = None
    # When the join was due (its bot's ask-to-join delay is measured from it: app/metrics.py).
    join_at: datetime | None = None


def _lease_ms() -> int:
    return int(LEASE_SECONDS * 1000)


async def claim(join_pk: int, plan_version: int, *, now: datetime, holder: str) -> BotRun | None:
    """Take the join for one bot run: the lease first, then scheduled -> dispatching.

    None when the job is stale (re-planned, cancelled, already running or done).
    Raises LeaseHeld while another run of the join still holds the lease.
    """
    row = await Join.select(Join.status, Join.plan_version, Join.end_at).where(Join.id == join_pk).first()
    if row is None or row["status"] != JoinStatus.SCHEDULED or row["plan_version"] != plan_version:
        return None
    if row["end_at"] is not None and row["end_at"] <= now:
        # The job fired after its meeting ended (workers were down): never join a finished meeting.
        await set_status(join_pk, JoinStatus.FAILED, FailReason.MISSED, now=now,
                         only_from=(JoinStatus.SCHEDULED,), version=plan_version)
        return None
    token = f"{holder}/{secrets.token_hex(6)}"
    if not await redis().set(bot_lease_key(join_pk), token, px=_lease_ms(), nx=True):
        raise LeaseHeld(join_pk)
    try:
        claimed = await _claim_within_account_cap(join_pk, plan_version, now=now)
    except BaseException:
        await _release(join_pk, token)
        raise
    if claimed is None:
        await _release(join_pk, token)
        return None
    try:
        return await _bot_run(claimed, token)
    except Exception as exc:  # the join is ours: end it rather than leave it for recovery to loop on
        log.exception("join %s: cannot load what its bot needs", join_pk)
        await set_status(join_pk, JoinStatus.FAILED, f"error: {exc}"[:300], now=now,
                         only_from=_OWNED, version=plan_version)
        await _release(join_pk, token)
        return None


async def _claim_within_account_cap(join_pk: int, plan_version: int, *, now: datetime) -> dict[str, Any] | None:
    """scheduled -> dispatching, unless the account already runs MAX_BOTS_PER_ACCOUNT bots.

    The count and the claim happen under one advisory lock per account, so workers
    claiming at the same instant cannot overshoot the cap together."""
    account = await Join.select(Join.pal.account.as_alias("account")).where(Join.id == join_pk).first()
    if account is None:
        return None
    async with engine().transaction():
        await Join.raw("SELECT pg_advisory_xact_lock({}, {})", _ACCOUNT_CLAIM_LOCK, account["account"])
        running = await Join.count().where(
            (Join.pal.account == account["account"]) & Join.status.is_in([str(s) for s in _OWNED]))
        if running >= get_settings().max_bots_per_account:
            raise AccountBusy(join_pk)
        return await set_status(join_pk, JoinStatus.DISPATCHING, now=now,
                                only_from=(JoinStatus.SCHEDULED,), version=plan_version)


async def _bot_run(claimed: dict[str, Any], token: str) -> BotRun:
    pal = await Pal.select(Pal.pal_name, Pal.default_face_id, Pal.account).where(Pal.id == claimed["pal"]).first()
    face_id = pal["default_face_id"]
    conversation = None
    if claimed["conversation"]:
        conversation = await Conversation.select(Conversation.id, Conversation.conversation_id,
                                                 Conversation.face_id).where(
            Conversation.id == claimed["conversation"]).first()
        face_id = conversation["face_id"] if conversation else face_id
    if conversation is None:
        conversation = await _open_conversation(claimed, pal)
    link = classify_url(claimed["meeting_url"])
    end_at = claimed["end_at"]
    return BotRun(
        join_pk=claimed["id"], plan_version=claimed["plan_version"], token=token, pal_pk=claimed["pal"],
        pal_name=pal["pal_name"], face_id=face_id or None, meeting_url=claimed["meeting_url"],
        platform=str(link.platform if link else Platform.OTHER), end_at=end_at,
        leave_at=end_at + get_settings().end_grace if end_at else None,
        conversation_pk=conversation["id"], conversation_id=conversation["conversation_id"],
        join_at=claimed["join_at"],
    )


async def _open_conversation(claimed: dict[str, Any], pal: dict[str, Any]) -> dict[str, Any]:
    """A calendar join's bot run gets a conversation: its transcript and live stream hang on it.

    Created for the PAL with its default face and the join's meeting URL, and linked to the
    join (once: a re-dispatched run of the same join keeps it)."""
    now = claimed["updated_at"]
    rows = await Conversation.insert(Conversation(
        conversation_id=new_public_id("c"), account=pal["account"], pal=claimed["pal"],
        face_id=pal["default_face_id"] or "", meeting_url=claimed["meeting_url"], created_at=now,
    )).returning(Conversation.id, Conversation.conversation_id, Conversation.face_id)
    created = rows[0]
    linked = await Join.update({Join.conversation: created["id"]}).where(
        (Join.id == claimed["id"]) & Join.conversation.is_null()).returning(Join.conversation)
    if not linked:  # linked concurrently (cannot happen while we own the join): use that one
        await Conversation.delete().where(Conversation.id == created["id"])
        row = await Join.select(Join.conversation).where(Join.id == claimed["id"]).first()
        existing = await Conversation.select(Conversation.id, Conversation.conversation_id,
                                             Conversation.face_id).where(
            Conversation.id == row["conversation"]).first()
        return existing
    return created


async def face_media(run: BotRun) -> FaceMedia:
    """The face's uploaded video and voice where it has them; the rest is generated and cached."""
    from app.media.generate import ensure_face_media_async

    face = await Face.select().where(Face.face_id == run.face_id).first() if run.face_id else None
    voice = (face["voice"] if face else None) or "en"
    if face and face["video_path"] and face["audio_path"]:
        # Fully uploaded: don't draw a y4m (several MB, pure Python) on the join's hot path.
        return FaceMedia(video_path=Path(face["video_path"]), audio_path=Path(face["audio_path"]), voice=voice)
    key = face["face_id"] if face else "default"
    generated = await ensure_face_media_async(key, run.pal_name, voice, Path(get_settings().media_dir))
    return FaceMedia(
        video_path=Path(face["video_path"]) if face and face["video_path"] else generated.video_path,
        audio_path=Path(face["audio_path"]) if face and face["audio_path"] else generated.audio_path,
        voice=voice,
    )


# --- the lease --------------------------------------------------------------------------------

async def _owns_join(run: BotRun) -> bool:
    row = await Join.select(Join.status, Join.plan_version).where(Join.id == run.join_pk).first()
    return row is not None and row["plan_version"] == run.plan_version and row["status"] in ACTIVE


async def renew_lease(run: BotRun) -> bool:
    """Extend this run's lease; False when it belongs to another run (or the join moved on)."""
    result = await redis().eval(_RENEW, 1, bot_lease_key(run.join_pk), run.token, _lease_ms())
    if result == 1:
        return True
    if result == 0 and await _owns_join(run):
        # Redis lost the key (restart, flush): take it back only while the join is still ours.
        # Recovery bumps plan_version before the next run can claim, so this never steals.
        return bool(await redis().set(bot_lease_key(run.join_pk), run.token, px=_lease_ms(), nx=True))
    return False


async def keep_lease(run: BotRun, *, lost: asyncio.Event, stop: asyncio.Event) -> None:
    """Renew the lease until cancelled; if it is lost or cannot be renewed in time, set `lost` and `stop`."""
    loop = asyncio.get_running_loop()
    renewed_at = loop.time()
    while True:
        await asyncio.sleep(RENEW_SECONDS)
        try:
            ours: bool | None = await asyncio.wait_for(renew_lease(run), RENEW_SECONDS)
        except Exception as exc:  # Redis or PostgreSQL unreachable, or slow: retry until the deadline
            log.warning("join %s: could not renew the bot lease: %r", run.join_pk, exc)
            ours = None
        if ours:
            renewed_at = loop.time()
        elif ours is False or loop.time() - renewed_at >= RENEW_DEADLINE_SECONDS:
            log.warning("join %s: bot lease %s; stopping this bot", run.join_pk,
                        "taken by another run" if ours is False else "not renewed in time")
            lost.set()
            stop.set()
            return


async def _release(join_pk: int, token: str) -> None:
    await redis().eval(_RELEASE, 1, bot_lease_key(join_pk), token)


async def release(run: BotRun) -> None:
    """Drop this run's lease (never another run's). Call only once its bot is gone."""
    await _release(run.join_pk, run.token)


# --- while the bot runs ----------------------------------------------------------------------

async def stop_requested(run: BotRun) -> bool:
    """Should the bot leave? The API or planner asked it to, or the join is no longer this run's."""
    row = await Join.select(Join.stop_requested, Join.status, Join.plan_version).where(
        Join.id == run.join_pk).first()
    return (row is None or row["stop_requested"] or row["plan_version"] != run.plan_version
            or row["status"] not in ACTIVE)


async def watch_stop(run: BotRun, stop: asyncio.Event) -> None:
    """Set `stop` when stop_requested() says so; polls until then (or until cancelled)."""
    while not stop.is_set():
        try:
            if await stop_requested(run):
                stop.set()
                return
        except Exception as exc:  # a database hiccup must not end the call
            log.warning("join %s: stop poll failed: %r", run.join_pk, exc)
        await asyncio.sleep(STOP_POLL_SECONDS)


async def record_status(run: BotRun, status: str, reason: str | None, *, now: datetime) -> bool:
    """Store a status the bot reached; ignored once the join is no longer this run's."""
    return await set_status(run.join_pk, status, reason, now=now, only_from=_OWNED,
                            version=run.plan_version) is not None


async def finish(run: BotRun, status: str, reason: str | None, *, now: datetime) -> bool:
    """Store how the run ended (left / failed), then drop the lease: in this order, so that
    recovery never sees a finished join as a lost one."""
    try:
        return await record_status(run, status, reason, now=now)
    finally:
        await release(run)


async def hand_back(run: BotRun, *, now: datetime, reason: str = WORKER_RESTARTED) -> bool:
    """The bot is gone but the meeting goes on (worker shutting down, lease lost): the next
    run rejoins, exactly once. False when the join was no longer this run's."""
    with contextlib.suppress(Exception):
        await release(run)  # the bot has left: let the next run start at once
    return await _redispatch(run.join_pk, run.plan_version, run.end_at, now=now, reason=reason)


async def _redispatch(join_pk: int, version: int, end_at: datetime | None, *, now: datetime, reason: str) -> bool:
    if end_at is not None and end_at <= now:
        await set_status(join_pk, JoinStatus.FAILED, FailReason.WORKER_LOST, now=now, only_from=_OWNED,
                         version=version)
        return False
    row = await set_status(join_pk, JoinStatus.SCHEDULED, reason, now=now, only_from=_OWNED, version=version,
                           bump_version=True, extra={Join.join_at: now})
    if row is None:
        return False
    await schedule_job(row, now)
    return True


# --- recovery ----------------------------------------------------------------------------------

async def recover_lost_bots(now: datetime) -> int:
    """Re-dispatch each active join whose lease is gone (its worker died); fail it if its meeting is over."""
    rows = await Join.select(Join.id, Join.plan_version, Join.end_at).where(
        Join.status.is_in([str(s) for s in _OWNED]))
    if not rows:
        return 0
    leases = await redis().mget([bot_lease_key(row["id"]) for row in rows])
    recovered = 0
    for row, lease in zip(rows, leases):
        if lease is not None:
            continue
        log.warning("join %s: its bot's lease is gone (worker lost); re-dispatching", row["id"])
        if await _redispatch(row["id"], row["plan_version"], row["end_at"], now=now, reason=REDISPATCHED):
            recovered += 1
    return recovered


@contextlib.asynccontextmanager
async def tick_lock(key: str, seconds: float) -> AsyncIterator[bool]:
    """One cron tick at a time across every worker: yields False when another tick holds `key`."""
    token = secrets.token_hex(8)
    if not await redis().set(key, token, px=int(seconds * 1000), nx=True):
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(Exception):
            await redis().eval(_RELEASE, 1, key, token)


async def recover_tick(now: datetime) -> dict[str, int]:
    """The recovery cron's body: recover_lost_bots under RECOVER_LOCK."""
    async with tick_lock(RECOVER_LOCK, RECOVER_LOCK_SECONDS) as mine:
        if not mine:
            return {"skipped": 1}
        return {"bots_recovered": await recover_lost_bots(now)}
