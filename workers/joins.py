"""The arq job that runs one Meet join: claim it in PostgreSQL, run the bot, record the end."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any

from arq import Retry

from app.clock import utcnow
from app.config import get_settings
from app.redis_client import redis
from app.services.joins import set_status, schedule_job
from app.tables import Conversation, Face, Join, Pal
from workers.meet_bot.bot import run_meet_bot
from workers.meet_bot.models import BotSettings, FaceMedia, parse_browser_args
from workers.scheduler import LEASE_SECONDS, lease_key

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
STOP_POLL_SECONDS = 2.0
BUSY_RETRY_SECONDS = 3


def bot_settings() -> BotSettings:
    s = get_settings()
    return BotSettings(chromium_path=s.chromium_path, extra_args=parse_browser_args(s.bot_browser_args),
                       waiting_room_timeout=s.waiting_room_timeout, alone_grace=s.alone_grace)


async def face_media(join: dict[str, Any], pal: dict[str, Any]) -> FaceMedia:
    """The face's uploaded video and voice where it has them; the rest is generated and cached."""
    from app.media.generate import ensure_face_media_async

    face_id = pal["default_face_id"]
    if join["conversation"]:
        conversation = await Conversation.select(Conversation.face_id).where(
            Conversation.id == join["conversation"]).first()
        face_id = conversation["face_id"] if conversation else face_id
    face = await Face.select().where(Face.face_id == face_id).first() if face_id else None
    if face and face["video_path"] and face["audio_path"]:
        # Fully uploaded: don't draw a y4m (several MB, pure Python) on the join's hot path.
        return FaceMedia(video_path=Path(face["video_path"]), audio_path=Path(face["audio_path"]))
    key = face["face_id"] if face else "default"
    voice = face["voice"] if face else "en"
    generated = await ensure_face_media_async(key, pal["pal_name"], voice, Path(get_settings().media_dir))
    return FaceMedia(
        video_path=Path(face["video_path"]) if face and face["video_path"] else generated.video_path,
        audio_path=Path(face["audio_path"]) if face and face["audio_path"] else generated.audio_path,
    )


async def _keep_lease(join_pk: int) -> None:
    while True:
        await redis().set(lease_key(join_pk), WORKER_ID, ex=LEASE_SECONDS)
        await asyncio.sleep(LEASE_SECONDS / 3)


async def _watch_stop(join_pk: int, stop: asyncio.Event) -> None:
    """The API and the planner ask a bot to leave by setting stop_requested."""
    while not stop.is_set():
        row = await Join.select(Join.stop_requested).where(Join.id == join_pk).first()
        if row is None or row["stop_requested"]:
            stop.set()
            return
        await asyncio.sleep(STOP_POLL_SECONDS)


async def run_join(ctx: dict[str, Any], join_pk: int, plan_version: int) -> str:
    clock = ctx.get("clock", utcnow)
    if ctx["bot_slots"].locked():
        # Every bot slot here is busy: give the job back (another worker may have room)
        # rather than hold an arq slot that crons and mail ingestion need.
        raise Retry(defer=BUSY_RETRY_SECONDS)
    claimed = await set_status(join_pk, "dispatching", now=clock(), only_from=("scheduled",), version=plan_version)
    if claimed is None:
        return "stale"  # re-planned, cancelled or already running: nothing to do
    if not await redis().set(lease_key(join_pk), WORKER_ID, ex=LEASE_SECONDS, nx=True):
        await set_status(join_pk, "failed", "another bot holds this join", now=clock())
        return "duplicate"
    pal = await Pal.select().where(Pal.id == claimed["pal"]).first()
    stop = asyncio.Event()
    tasks = [asyncio.create_task(_keep_lease(join_pk)), asyncio.create_task(_watch_stop(join_pk, stop))]
    end_grace = get_settings().end_grace
    leave_at = claimed["end_at"] + end_grace if claimed["end_at"] else None

    async def on_status(status: str, reason: str | None) -> None:
        await set_status(join_pk, status, reason, now=clock())

    try:
        media = await face_media(claimed, pal)
        async with ctx["bot_slots"]:
            result = await run_meet_bot(claimed["meeting_url"], pal["pal_name"], media, ctx.get("bot_settings") or bot_settings(),
                                        on_status=on_status, leave_at=leave_at, stop=stop, clock=clock)
        await set_status(join_pk, result.status, result.reason, now=clock())
        return f"{result.status}:{result.reason}"
    except asyncio.CancelledError:
        # Worker shutting down: hand the join back so the next worker rejoins, exactly once.
        with contextlib.suppress(Exception):
            row = await set_status(join_pk, "scheduled", "worker restarted", now=clock(), bump_version=True,
                                   extra={Join.join_at: clock()})
            if row:
                await schedule_job(row, clock())
        raise
    except Exception as exc:
        log.exception("join %s failed", join_pk)
        await set_status(join_pk, "failed", f"error: {exc}"[:300], now=clock())
        return "failed:error"
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(Exception):
            await redis().delete(lease_key(join_pk))
