"""SPEAK end to end: real Chromium, the injected microphone, the far end's AnalyserNode.

The bot's getUserMedia override gives Meet a microphone that Python feeds through
channels.commands; the look-alike's far end (an unhooked RTCPeerConnection in an iframe) measures
what the PAL sends (dominant frequency and RMS every 20 ms, record.far_audio) and its mic button
stops the track on "off" and asks getUserMedia again on "on", as Meet does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from tests.integration.test_meet_bot import CHROMIUM, media, new_code, no_leftovers, pytestmark, settings  # noqa: F401
from tests.meet_lookalike import MeetLookalike
from workers.meet_bot import BotResult, FaceMedia, run_meet_bot
from workers.meet_bot import bot as bot_mod
from workers.meet_bot.channels import Clear, MediaChannels, Say, SpeakAudio
from workers.meet_bot.pcm import from_samples, sine, split_pcm
from workers.meet_bot.speak import Speaker

LOUD = 0.05  # far-end RMS (full scale 1.0); a 0.5-amplitude sine is ~0.35
QUIET = 0.01


def tone(freq: float, seconds: float) -> list[bytes]:
    """A continuous sine cut into 100 ms SpeakAudio frames (phase runs on across frames)."""
    return split_pcm(from_samples(sine(freq, seconds, amplitude=0.5)), 100)


def window(samples: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    return [s for s in samples if start <= s["t"] <= end]


def toggles(server: MeetLookalike, code: str) -> list[tuple[float, bool]]:
    return [(e["t"], bool(e["on"])) for e in server.record(code).events
            if e["event"] == "toggle" and e.get("device") == "mic"]


async def speak_run(server: MeetLookalike, args: str, media: FaceMedia,
                    script: Callable[[MediaChannels, str, list[Speaker]], Awaitable[None]],
                    channels: MediaChannels) -> tuple[BotResult, str, list[Speaker]]:
    """Run the bot with `channels` in a meeting with a far end; `script` drives it once in the call."""
    code = new_code()
    url = server.configure(code, "stay", admit_after=0.5, tones=[])
    stop = asyncio.Event()
    speakers: list[Speaker] = []
    real = bot_mod.Speaker
    failures: list[BaseException] = []

    def spy(*a: Any, **kw: Any) -> Speaker:
        sp = real(*a, **kw)
        speakers.append(sp)
        return sp

    async def drive() -> None:
        try:
            end = time.time() + 15
            while not (server.record(code).rtc and server.record(code).far_audio) and time.time() < end:
                await asyncio.sleep(0.1)
            assert server.record(code).rtc and server.record(code).rtc[0]["connected"], server.record(code).events
            await script(channels, code, speakers)
        except BaseException as exc:  # surfaced by the test after the bot has left
            failures.append(exc)
        finally:
            stop.set()

    tasks: list[asyncio.Task[None]] = []

    async def on_status(status: str, reason: str | None) -> None:
        if status == "in_call":
            tasks.append(asyncio.create_task(drive()))

    bot_mod.Speaker = spy  # type: ignore[misc]
    try:
        result = await asyncio.wait_for(
            run_meet_bot(url, "Anna PAL", media, settings(args, alone_grace=120), on_status=on_status,
                         stop=stop, channels=channels), timeout=90)
    finally:
        bot_mod.Speaker = real  # type: ignore[misc]
        for t in tasks:
            t.cancel()
    if failures:
        raise failures[0]
    return result, code, speakers


async def test_pcm_is_heard_as_880_hz_mic_follows_speech_and_clear_silences(
        meet_lookalike: MeetLookalike, lookalike_browser_args: str, media: FaceMedia) -> None:
    marks: dict[str, float] = {}

    async def script(ch: MediaChannels, code: str, speakers: list[Speaker]) -> None:
        rec = meet_lookalike.record(code)
        await asyncio.sleep(3.0)  # the mic is turned off ~2 s after admission: nothing to say
        marks["idle"] = time.time()
        for frame in tone(880, 2.0):
            ch.commands.put_nowait(SpeakAudio(frame))
        marks["tone"] = time.time()
        await asyncio.sleep(1.2)
        marks["mic_while_speaking"] = 1.0 if speakers[0].mic_state == "on" else 0.0
        await asyncio.sleep(1.8)  # the tone ends; a pause shorter than mic_off_after (2 s)
        marks["after"] = time.time()
        for frame in tone(660, 10.0):
            ch.commands.put_nowait(SpeakAudio(frame))
        end = time.time() + 8
        while time.time() < end:  # wait for the 660 Hz tone to be loud at the far end
            await asyncio.sleep(0.05)
            loud = [s for s in window(rec.far_audio, marks["after"], time.time()) if s["rms"] > LOUD]
            if len(loud) >= 25:  # ~0.5 s of it
                break
        marks["clear"] = time.time()
        ch.commands.put_nowait(Clear())
        await asyncio.sleep(4.0)  # silence, then the mic goes off ~2 s later

    channels = MediaChannels()
    result, code, speakers = await speak_run(meet_lookalike, lookalike_browser_args, media, script, channels)
    rec = meet_lookalike.record(code)
    assert result == BotResult("left", "stopped")
    [sp] = speakers
    far = rec.far_audio
    assert far, rec.event_names()

    # Idle after admission: the mic was turned off, and the far end hears silence.
    mic = toggles(meet_lookalike, code)
    offs_before = [t for t, on in mic if not on and t < marks["tone"]]
    assert offs_before, mic
    # 880 Hz, heard as 880 Hz (the analyser's dominant bin, refined, within ±15 Hz).
    heard = [s for s in window(far, marks["tone"], marks["tone"] + 2.8) if s["rms"] > LOUD]
    assert len(heard) >= 50, f"only {len(heard)} loud far-end samples"  # ≥ 1 s of 20 ms samples
    freqs = sorted(s["f"] for s in heard)
    median = freqs[len(freqs) // 2]
    assert abs(median - 880) <= 15, median
    assert all(abs(f - 880) <= 15 for f in freqs[len(freqs) // 10: -len(freqs) // 10 or None]), freqs
    # No gap: from the first to the last loud sample the level never drops out.
    first, last = heard[0]["t"], heard[-1]["t"]
    inside = window(far, first, last)
    assert min(s["rms"] for s in inside) > LOUD, [round(s["rms"], 3) for s in inside]
    assert 1.7 <= last - first <= 2.3, (first, last)
    assert sp.stats.late == 0, sp.stats
    # The mic came on for the tone, stayed on while speaking (and over a pause shorter than 2 s),
    # and went off ~2 s after the last audio.
    assert [on for t, on in mic if marks["tone"] <= t < marks["tone"] + 1.2] == [True], mic
    assert marks["mic_while_speaking"] == 1.0
    assert [on for t, on in mic if marks["tone"] + 1.2 <= t < marks["clear"] + 1.5] == [], mic
    assert [on for t, on in mic if marks["clear"] + 1.5 <= t] == [False], mic
    assert "mic_device" in rec.event_names()  # the look-alike stopped the track and asked again
    # Barge-in: the flush happened, and the far end went quiet within 500 ms (target 300 ms).
    assert sp.stats.clears == 1 and sp.stats.flushes == 1, sp.stats
    assert sp.last_clear_at is not None and sp.last_flush_at is not None
    flush_ms = 1000 * (sp.last_flush_at - sp.last_clear_at)
    assert 0 <= flush_ms < 100, flush_ms  # the page's queue was dropped right away
    after = window(far, marks["clear"], marks["clear"] + 2.0)
    quiet_at = next(s["t"] for s in after if s["rms"] < QUIET)
    latency = quiet_at - marks["clear"]
    assert all(s["rms"] < QUIET for s in window(far, quiet_at, marks["clear"] + 1.5)), after
    loud_660 = [s for s in window(far, marks["after"], marks["clear"]) if s["rms"] > LOUD]
    assert abs(sorted(s["f"] for s in loud_660)[len(loud_660) // 2] - 660) <= 15
    print(f"SPEAK: 880 Hz heard as {median:.1f} Hz (n={len(heard)}, min rms {min(s['rms'] for s in inside):.3f}, "
          f"span {last - first:.2f} s); Clear -> page flushed in {flush_ms:.1f} ms, far-end RMS < {QUIET} "
          f"after {1000 * latency:.0f} ms; "
          f"mic toggles {[(round(t - marks['idle'], 2), on) for t, on in mic]}; stats {sp.stats}")
    assert latency <= 0.5, latency


async def test_say_is_spoken_with_the_face_voice_and_reported(
        meet_lookalike: MeetLookalike, lookalike_browser_args: str, media: FaceMedia) -> None:
    said: list[tuple[str, datetime, float]] = []
    marks: dict[str, float] = {}

    async def on_self_speech(text: str, at: datetime) -> None:
        said.append((text, at, time.time()))

    async def script(ch: MediaChannels, code: str, speakers: list[Speaker]) -> None:
        await asyncio.sleep(0.5)
        marks["say"] = time.time()
        await ch.commands.put(Say("hello everyone, this is the PAL speaking in the meeting"))
        await asyncio.sleep(6.0)

    channels = MediaChannels(on_self_speech=on_self_speech)
    result, code, speakers = await speak_run(meet_lookalike, lookalike_browser_args, media, script, channels)
    rec = meet_lookalike.record(code)
    assert result == BotResult("left", "stopped")
    assert [t for t, _, _ in said] == ["hello everyone, this is the PAL speaking in the meeting"]
    _, at, called = said[0]
    assert marks["say"] <= called <= marks["say"] + 2.0
    assert abs(at.timestamp() - called) < 1.0
    speech = window(rec.far_audio, marks["say"], marks["say"] + 6.0)
    loud = [s for s in speech if s["rms"] > 0.02]
    assert len(loud) >= 25, f"{len(loud)} loud samples; max rms {max((s['rms'] for s in speech), default=0):.3f}"
    # Speech energy, in the voice band, starting after the report and not before.
    assert loud[0]["t"] >= marks["say"]
    assert all(80 <= s["f"] <= 4000 for s in loud[:10]), loud[:10]
    [sp] = speakers
    assert sp.stats.said == 1 and sp.stats.tts_errors == 0, sp.stats
    print(f"SAY: {len(loud)} loud far-end samples over {loud[-1]['t'] - loud[0]['t']:.2f} s, first "
          f"{1000 * (loud[0]['t'] - called):.0f} ms after on_self_speech; stats {sp.stats}")
