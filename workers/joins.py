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
from collections.abc import Awaitable, Callable
from typing import Any

from arq import Retry

from app import metrics
from app.clock import utcnow
from app.config import get_settings
from app.domain.join_state import FailReason, JoinStatus
from app.domain.platforms import display_name
from app.domain.join_state import EventKind
from app.domain.meeting_prompt import TranscriptLine
from app.services import agent_link, bot_runs, pipeline, transcripts
from app.services import llm as llm_client
from app.services.events import record_event
from app.services.media_relay import WorkerRelay
from workers.bots import bot_for
from workers.meet_bot.channels import Clear, MediaChannels, Say, SendChat, SpeakAudio
from workers.meet_bot.models import BotSettings, parse_browser_args
from workers.meet_bot.pcm import split_pcm, wav_to_pcm
from workers.meet_bot.tts import endpoint_synth
from workers.participant import Participant

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
BUSY_RETRY_SECONDS = 3
COMMAND_QUEUE_SIZE = 1000  # commands waiting for the bot (voice frames, say, chat, clear)
ASKED_TO_JOIN = (JoinStatus.WAITING_ROOM, JoinStatus.IN_CALL)


# --- the media bridge: the bot's channels <-> Redis (app/services/media_relay.py) ------------------

def media_channels(relay: WorkerRelay, participant: Participant | None = None, *,
                   commands: asyncio.Queue[Any] | None = None,
                   on_problem: Callable[[str, str], Awaitable[None]] | None = None) -> MediaChannels:
    """The bot's channels wired to `relay` (published and stored) and, for a `full` PAL, to its
    participant (heard and answered), which speaks through the same `commands` queue."""
    queue = commands if commands is not None else asyncio.Queue(COMMAND_QUEUE_SIZE)
    if participant is None:
        return MediaChannels(on_audio=relay.on_audio, on_caption=relay.on_caption, on_chat=relay.on_chat,
                             on_self_speech=relay.on_self_speech, on_problem=_both(relay.on_problem, on_problem),
                             commands=queue)
    return MediaChannels(
        on_audio=_both(relay.on_audio, participant.on_audio), on_caption=_both(relay.on_caption, participant.on_caption),
        on_chat=_both(relay.on_chat, participant.on_chat),
        on_self_speech=_both(relay.on_self_speech, participant.on_self_speech),
        on_speaking=participant.on_speaking, on_problem=_both(relay.on_problem, on_problem), commands=queue)


def _both(first: Callable[..., Any], second: Callable[..., Any] | None) -> Callable[..., Any]:
    """One channel callback feeding two consumers: `first` is sync, `second` may be async."""
    if second is None:
        return first

    def call(*args: Any) -> Any:
        first(*args)
        return second(*args)

    return call


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


# --- the full pipeline (workers/participant.py) -----------------------------------------------------

def _recorder(run: bot_runs.BotRun) -> Callable[[str, dict[str, Any]], Awaitable[Any]]:
    """record(kind, payload): a PAL event about this run's conversation."""

    async def record(kind: str, payload: dict[str, Any]) -> Any:
        return await record_event(run.pal_pk, kind, {"conversation_id": run.conversation_id, **payload})

    return record


async def _pipeline_setup(run: bot_runs.BotRun, record: Callable[..., Awaitable[Any]]) -> pipeline.PipelineSetup | None:
    """The PAL's pipeline for this run; a `full` PAL whose LLM may not be used runs as echo."""
    try:
        setup = await pipeline.setup_for_run(run.pal_pk, run.join_pk)
    except Exception:
        log.exception("join %s: could not read the PAL's pipeline; it joins without one", run.join_pk)
        return None
    if setup.mode == pipeline.FULL and setup.llm is None:
        log.info("join %s: PAL %s is `full` but %s; it only says what it is sent", run.join_pk,
                 run.pal_name, setup.problem)
    if setup.llm is not None and (why := await pipeline.endpoint_refusal(setup.llm)):
        await record(EventKind.LLM_UNAVAILABLE, {"reason": f"refused: {why}"})
        setup = dataclasses.replace(setup, llm=None, problem=why)
    return setup


async def _voice(setup: pipeline.PipelineSetup, record: Callable[..., Awaitable[Any]]) -> Any:
    """The PAL's layers.tts endpoint as a Speaker synth, or None for espeak-ng (the face's voice)."""
    tts = setup.tts
    if tts is None:
        return None
    if why := await pipeline.endpoint_refusal(tts):
        await record(EventKind.TTS_UNAVAILABLE, {"reason": f"refused: {why}"})
        return None
    last_report = [float("-inf")]

    async def speak(text: str) -> bytes:
        try:
            return await llm_client.speech(text, base_url=tts.base_url, api_key=tts.api_key, model=tts.model,
                                           voice=tts.voice, timeout=tts.timeout)
        except llm_client.LlmUnavailable as exc:
            if time.monotonic() - last_report[0] > 60:  # one event a minute, not one per sentence
                last_report[0] = time.monotonic()
                await record(EventKind.TTS_UNAVAILABLE, {"reason": exc.reason})
            raise

    return endpoint_synth(speak, llm_client.SPEECH_RATE)


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _write_notes(participant: Participant, run: bot_runs.BotRun) -> None:
    """The meeting's notes from the stored transcript, once the PAL has left (best effort)."""
    try:
        lines = [TranscriptLine(e["speaker"], e["text"], is_self=bool(e.get("self")), kind=e["kind"])
                 for e in await transcripts.all_entries(run.conversation_pk)]
        await participant.write_notes(lines)
    except Exception:
        log.exception("conversation %s: writing the notes failed", run.conversation_id)


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
    participant: Participant | None = None
    synth = None
    if run.conversation_id and run.conversation_pk and _takes_channels(bot):
        relay = WorkerRelay(run.conversation_id, run.conversation_pk, run.pal_name, clock=clock)
        relay.start()
        record = _recorder(run)
        setup = await _pipeline_setup(run, record)
        commands: asyncio.Queue[Any] = asyncio.Queue(COMMAND_QUEUE_SIZE)
        if setup is not None and setup.thinks:
            participant = Participant(setup, commands, conversation_pk=run.conversation_pk,
                                      conversation_id=run.conversation_id, record_event=record,
                                      fallback_greeting=lambda: greet(channels, media.audio_path))
        synth = await _voice(setup, record) if setup is not None else None
        channels = media_channels(relay, participant, commands=commands,
                                  on_problem=lambda kind, detail: record(kind, {"detail": detail}))
        if participant is not None:
            tasks.append(asyncio.create_task(participant.run(), name="participant"))
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
        if status == JoinStatus.IN_CALL and participant is not None:
            participant.admitted()  # it greets with its LLM (the face's clip if that fails)
        elif status == JoinStatus.IN_CALL and "channels" in extra and not greeting:
            greeting.append(asyncio.create_task(greet(extra["channels"], media.audio_path)))

    try:
        media = await bot_runs.face_media(run)
        async with ctx["bot_slots"]:
            settings = dataclasses.replace(ctx.get("bot_settings") or bot_settings(), voice=media.voice,
                                           synth=synth)
            if participant is not None:
                # A PAL that answers keeps its mic open (silent between turns): each unmute makes
                # Meet replace the track, and the far side then plays it up to a second late.
                settings = dataclasses.replace(settings, mic_off_after=float("inf"))
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
        if participant is not None:
            await participant.close()
            if not lost.is_set() and not _cancelling():
                await _write_notes(participant, run)
        try:
            await bot_runs.release(run)  # no-op when finish / hand_back already did
        except Exception:
            log.warning("join %s: could not release the bot lease; it expires on its own", join_pk)
