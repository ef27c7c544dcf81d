"""The arq job that runs one join: the service claims it, the platform's bot joins, the service records the end.

Every read and write of the join, and its bot lease, is app/services/bot_runs.py's;
this module only wires the job, the bot slots, the bot, the lease and stop watchers and the
bot's media channels (app/services/media_relay.py: Redis and the transcript).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import logging
import os
import socket
import time
from typing import Any

from arq import Retry

from app import metrics
from app.clock import utcnow
from app.config import get_settings
from app.domain.join_state import FailReason, JoinStatus
from app.domain.platforms import display_name
from app.services import agent_link, bot_runs
from app.services.media_relay import WorkerRelay
from workers.bots import bot_for
from workers.meet_bot.channels import Clear, MediaChannels, Say, SendChat, SpeakAudio
from workers.meet_bot.models import BotSettings, parse_browser_args
from workers.meet_bot.pcm import split_pcm, wav_to_pcm

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
BUSY_RETRY_SECONDS = 3
ASKED_TO_JOIN = (JoinStatus.WAITING_ROOM, JoinStatus.IN_CALL)


# --- the media bridge: the bot's channels <-> Redis (app/services/media_relay.py) ------------------

def media_channels(relay: WorkerRelay) -> MediaChannels:
    """The bot's four channels wired to `relay`: what happens in the meeting is published and stored."""
    return MediaChannels(on_audio=relay.on_audio, on_caption=relay.on_caption, on_chat=relay.on_chat,
                         on_self_speech=relay.on_self_speech)


def command_sink(channels: MediaChannels, conversation_id: str):
    """`deliver(kind, value)` for WorkerRelay.pump_commands: onto the bot's bounded queue, or dropped."""
    last_log = [0.0]

    def deliver(kind: str, value: Any) -> bool:
        item = {"audio": lambda: SpeakAudio(value, live=True), "say": lambda: Say(value), "chat": lambda: SendChat(value),
                "clear": Clear}[kind]()
        try:
            channels.commands.put_nowait(item)
            return True
        except asyncio.QueueFull:
            if time.monotonic() - last_log[0] > 5:  # one line per 5 s, not one per frame
                last_log[0] = time.monotonic()
                log.warning("conversation %s: the bot's command queue is full; dropping %s", conversation_id, kind)
            return False

    return deliver


async def greet(channels: MediaChannels, wav_path: Any) -> None:
    """Once admitted, the PAL says its face's greeting (the uploaded or generated voice clip)."""
    try:
        pcm = await asyncio.to_thread(lambda: wav_to_pcm(open(wav_path, "rb").read()))
    except (OSError, ValueError) as exc:
        log.warning("greeting %s not played: %s", wav_path, exc)
        return
    for chunk in split_pcm(pcm):
        try:
            channels.commands.put_nowait(SpeakAudio(chunk))
        except asyncio.QueueFull:
            return


def _takes_channels(bot: Any) -> bool:
    try:
        return "channels" in inspect.signature(bot).parameters
    except (TypeError, ValueError):
        return False


def bot_settings() -> BotSettings:
    s = get_settings()
    return BotSettings(chromium_path=s.chromium_path, extra_args=parse_browser_args(s.bot_browser_args),
                       waiting_room_timeout=s.waiting_room_timeout, alone_grace=s.alone_grace)


async def run_join(ctx: dict[str, Any], join_pk: int, plan_version: int) -> str:
    clock = ctx.get("clock", utcnow)
    if ctx["bot_slots"].locked():
        # Every bot slot here is busy: give the job back (another worker may have room)
        # rather than hold an arq slot that crons and mail ingestion need.
        raise Retry(defer=BUSY_RETRY_SECONDS)
    try:
        run = await bot_runs.claim(join_pk, plan_version, now=clock(), holder=WORKER_ID)
    except bot_runs.LeaseHeld:
        # The previous run of this join has not let go yet (it is leaving): never two bots.
        raise Retry(defer=bot_runs.RENEW_SECONDS) from None
    except bot_runs.AccountBusy:
        # The tenant already runs as many bots as it may; the join waits (and ends as
        # missed if its meeting is over first) rather than taking shared capacity.
        if ctx.get("job_try", 1) == 1:
            log.info("join %s waits: its account runs MAX_BOTS_PER_ACCOUNT bots", join_pk)
        raise Retry(defer=BUSY_RETRY_SECONDS) from None
    if run is None:
        return "stale"  # re-planned, cancelled or already running: nothing to do
    bot = bot_for(run.platform)
    if bot is None:
        log.warning("join %s: no bot joins %s meetings (%s)", join_pk, display_name(run.platform), run.meeting_url)
        await bot_runs.finish(run, JoinStatus.FAILED, FailReason.UNSUPPORTED_PLATFORM, now=clock())
        return f"failed:{FailReason.UNSUPPORTED_PLATFORM}"

    stop, lost = asyncio.Event(), asyncio.Event()
    tasks = [asyncio.create_task(bot_runs.keep_lease(run, lost=lost, stop=stop)),
             asyncio.create_task(bot_runs.watch_stop(run, stop))]
    relay: WorkerRelay | None = None
    agent: agent_link.AgentLink | None = None
    extra: dict[str, Any] = {}
    if run.conversation_id and run.conversation_pk and _takes_channels(bot):
        relay = WorkerRelay(run.conversation_id, run.conversation_pk, run.pal_name, clock=clock)
        relay.start()
        channels = media_channels(relay)
        tasks.append(asyncio.create_task(relay.pump_commands(command_sink(channels, run.conversation_id))))
        extra["channels"] = channels
        # The PAL's agent (layers.realtime.websocket_url), if it has one: a stream client by dial-out.
        agent = agent_link.for_run(run.pal_pk, run.conversation_id)
        agent.start()

    greeting: list[asyncio.Task[None]] = []
    asked: list[bool] = []

    async def on_status(status: str, reason: str | None) -> None:
        await bot_runs.record_status(run, status, reason, now=clock())
        if status in ASKED_TO_JOIN and not asked:  # the waiting room, or straight in: once per run
            asked.append(True)
            metrics.observe_join_ask_delay(run.join_at, clock())
        if relay is not None:
            relay.on_status(status, reason)
        if status == JoinStatus.IN_CALL and "channels" in extra and not greeting:
            greeting.append(asyncio.create_task(greet(extra["channels"], media.audio_path)))

    try:
        media = await bot_runs.face_media(run)
        async with ctx["bot_slots"]:
            settings = dataclasses.replace(ctx.get("bot_settings") or bot_settings(), voice=media.voice)
            result = await bot(run.meeting_url, run.pal_name, media, settings,
                               on_status=on_status, leave_at=run.leave_at, stop=stop, clock=clock, **extra)
        if lost.is_set():
            # Our lease ran out under us (Redis unreachable, worker stalled): the bot left so
            # that the next run never shares the meeting with it; the next run rejoins.
            await bot_runs.hand_back(run, now=clock(), reason=bot_runs.LEASE_LOST)
            return "handed_back:lease_lost"
        await bot_runs.finish(run, result.status, result.reason, now=clock())
        if relay is not None:
            relay.on_status(result.status, result.reason)
        return f"{result.status}:{result.reason}"
    except asyncio.CancelledError:
        # Worker shutting down: the bot has closed its browser; hand the join to the next worker.
        try:
            await bot_runs.hand_back(run, now=clock())
        except Exception:
            log.exception("join %s: hand-back failed; recovery re-dispatches it when the lease expires", join_pk)
        raise
    except Exception as exc:
        log.exception("join %s failed", join_pk)
        await bot_runs.finish(run, JoinStatus.FAILED, f"error: {exc}"[:300], now=clock())
        return "failed:error"
    finally:
        for task in tasks + greeting:
            task.cancel()
        if relay is not None:
            with contextlib.suppress(Exception):
                await relay.close()  # what the bot said last is published and stored first
            if relay.stats.dropped or relay.stats.publish_errors or relay.stats.store_errors:
                log.info("conversation %s: media relay %s", run.conversation_id, relay.stats)
        if agent is not None:
            with contextlib.suppress(Exception):
                await agent.close()  # after the relay's flush: the agent hears the final status
        try:
            await bot_runs.release(run)  # no-op when finish / hand_back already did
        except Exception:
            log.warning("join %s: could not release the bot lease; it expires on its own", join_pk)
