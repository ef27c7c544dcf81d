"""HEAR end to end: real Chromium, the bot's page hook, the CDP binding, PCM in Python.

The look-alike connects its meeting RTCPeerConnection over 127.0.0.1 to an unhooked far end that
plays participant tones; the bot must hand Python that audio as 16 kHz int16 PCM frames of at
most 100 ms, and nothing of its own voice (the fake mic, espeak speech, is sent to the far end).
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.integration.test_meet_bot import CHROMIUM, media, new_code, no_leftovers, pytestmark, settings  # noqa: F401
from tests.meet_lookalike import MeetLookalike
from workers.meet_bot import BotResult, FaceMedia, run_meet_bot
from workers.meet_bot import media_bridge
from workers.meet_bot.pcm import MAX_FRAME_BYTES, SAMPLE_RATE, dominant_frequency, rms, to_samples, tone_fraction


HEARD_SOCKETS: dict[str, set[str]] = {}  # code -> addresses the far end's UDP port was bound to


class Recorder:
    """An audio_sink that keeps every frame with its arrival time."""

    def __init__(self) -> None:
        self.frames: list[tuple[float, bytes]] = []

    def __call__(self, pcm: bytes) -> None:
        self.frames.append((time.time(), pcm))

    def samples_between(self, start: float, end: float) -> list[int]:
        out: list[int] = []
        for t, pcm in self.frames:
            if start <= t <= end:
                out.extend(to_samples(pcm))
        return out


def udp_bound(port: int) -> set[str]:
    """Local IPv4 addresses of UDP sockets bound to `port` on this host (/proc/net/udp)."""
    found: set[str] = set()
    with open("/proc/net/udp") as fh:
        for line in fh.readlines()[1:]:
            addr, hexport = line.split()[1].split(":")
            if int(hexport, 16) == port:
                found.add(".".join(str(int(addr[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return found


async def hear(server: MeetLookalike, args: str, media: FaceMedia, tones: list[dict[str, float]],
               seconds: float, sink: object) -> tuple[BotResult, str, list[media_bridge.AudioTap]]:
    """Run the bot in a "stay" meeting for `seconds` after in_call, with `sink` as audio_sink."""
    code = new_code()
    url = server.configure(code, "stay", admit_after=0.5, tones=tones)
    stop = asyncio.Event()
    sockets: list[set[str]] = []
    taps: list[media_bridge.AudioTap] = []
    real_tap = media_bridge.AudioTap

    def before_stop() -> None:
        rtc = server.record(code).rtc
        port = rtc[0]["far_pair"]["local"].rsplit(":", 1)[1] if rtc else ""
        sockets.append(udp_bound(int(port)) if port.isdigit() else {"?"})
        stop.set()

    async def on_status(status: str, reason: str | None) -> None:
        if status == "in_call":
            asyncio.get_running_loop().call_later(seconds, before_stop)

    def spy(*a: object, **kw: object) -> media_bridge.AudioTap:
        tap = real_tap(*a, **kw)  # type: ignore[arg-type]
        taps.append(tap)
        return tap

    import workers.meet_bot.bot as bot_mod
    bot_mod.AudioTap = spy  # type: ignore[assignment]
    try:
        result = await asyncio.wait_for(
            run_meet_bot(url, "Anna PAL", media, settings(args), on_status=on_status, stop=stop,
                         audio_sink=sink),  # type: ignore[arg-type]
            timeout=60 + seconds)
    finally:
        bot_mod.AudioTap = real_tap  # type: ignore[assignment]
    HEARD_SOCKETS[code] = sockets[0] if sockets else {"?"}
    return result, code, taps


def tone_start(server: MeetLookalike, code: str, freq: float) -> float:
    [ev] = [e for e in server.record(code).tones_started if e["freq"] == freq]
    return float(ev["t"])


async def test_participant_tone_reaches_python_as_440_hz_pcm(
        meet_lookalike: MeetLookalike, lookalike_browser_args: str, media: FaceMedia) -> None:
    rec = Recorder()
    result, code, taps = await hear(meet_lookalike, lookalike_browser_args, media,
                                    [{"freq": 440, "at": 0.2}], seconds=5, sink=rec)
    record = meet_lookalike.record(code)
    assert result == BotResult("left", "stopped")
    assert record.rtc and record.rtc[0]["connected"], record.events
    # Loopback only: the meeting end sends from 127.0.0.1 to the far end's port, which is bound to
    # the any-address (stats hide a peer-reflexive address, so the socket table says where it is).
    pair, far_pair = record.rtc[0]["pair"], record.rtc[0]["far_pair"]
    far_end_bound = HEARD_SOCKETS[code]
    assert pair["local"].startswith("127.0.0.1:") and far_pair["remote"] == pair["local"], (pair, far_pair)
    assert far_pair["local"].endswith(pair["remote"]), (pair, far_pair)
    assert far_end_bound in (set(), {"0.0.0.0"}, {"127.0.0.1"}), far_end_bound
    assert rec.frames, "no audio reached Python"
    assert all(0 < len(pcm) <= MAX_FRAME_BYTES and len(pcm) % 2 == 0 for _, pcm in rec.frames)
    started = tone_start(meet_lookalike, code, 440)
    samples = rec.samples_between(started + 1.0, started + 3.0)
    assert len(samples) >= SAMPLE_RATE, f"only {len(samples)} samples in 2 s"
    freq = dominant_frequency(samples, SAMPLE_RATE)
    assert abs(freq - 440) <= 10, freq
    assert rms(samples) > 1000  # gain 0.3 -> about 6950 on the int16 scale
    # Only the participant: the PAL's own speech (its fake mic, sent to the far end) is absent.
    assert tone_fraction(samples[: SAMPLE_RATE], freq) > 0.95
    # Latency from the far end adding the track to the first loud frame in Python (logged only).
    loud = next(t for t, pcm in rec.frames if t >= started and rms(to_samples(pcm)) > 1000)
    print(f"HEAR: {freq:.1f} Hz, rms {rms(samples):.0f}, tone fraction {tone_fraction(samples[:SAMPLE_RATE], freq):.4f}, "
          f"first loud frame {1000 * (loud - started):.0f} ms after the track was added, "
          f"{len(rec.frames)} frames of {len(rec.frames[0][1]) // 2} samples; pair {pair} far end bound to {far_end_bound}")
    [tap] = taps
    stats = tap.stats
    assert stats.bad == 0 and stats.dropped == 0 and stats.missing == 0, stats
    # Real-time: about 16000 samples per second of audio since the graph started.
    total = sum(len(p) for _, p in rec.frames) // 2
    span = rec.frames[-1][0] - rec.frames[0][0]
    assert abs(total / SAMPLE_RATE - span) < 1.0, (total, span)


async def test_track_added_after_the_bot_joined_is_heard_and_mixed(
        meet_lookalike: MeetLookalike, lookalike_browser_args: str, media: FaceMedia) -> None:
    """First nobody talks; at 2 s a 440 Hz participant joins, at 4 s a 1000 Hz one as well."""
    frames: list[tuple[float, bytes]] = []

    async def slow_async_sink(pcm: bytes) -> None:  # async sinks are awaited by the pump
        frames.append((time.time(), pcm))
        await asyncio.sleep(0)

    result, code, taps = await hear(meet_lookalike, lookalike_browser_args, media,
                                    [{"freq": 440, "at": 2.0}, {"freq": 1000, "at": 4.0, "gain": 0.2}],
                                    seconds=8, sink=slow_async_sink)
    assert result == BotResult("left", "stopped")
    rec = Recorder()
    rec.frames = frames
    first = tone_start(meet_lookalike, code, 440)
    second = tone_start(meet_lookalike, code, 1000)
    assert second > first
    before = rec.samples_between(0, first - 0.3)
    assert not before or rms(before) < 50  # silence (or nothing) before anyone talks
    one = rec.samples_between(first + 0.8, second - 0.2)
    assert abs(dominant_frequency(one) - 440) <= 10
    both = rec.samples_between(second + 1.0, second + 3.0)
    assert len(both) >= SAMPLE_RATE
    assert abs(dominant_frequency(both, lo=700) - 1000) <= 10
    assert abs(dominant_frequency(both, hi=700) - 440) <= 10
    assert taps[0].stats.bad == 0
