"""HEAR's pure parts: frame decoding, bounded buffering, tone analysis, the tap without a browser."""

from __future__ import annotations

import asyncio
import base64
import json
import math

import pytest

from workers.meet_bot import bridge_js
from workers.meet_bot.media_bridge import AudioTap
from workers.meet_bot.pcm import (
    MAX_FRAME_BYTES, SAMPLE_RATE, BadFrame, DropOldest, SeqGaps, decode_frame, dominant_frequency, encode_frame,
    from_samples, goertzel_power, rms, sine, to_samples, tone_fraction,
)


# --- frames ---------------------------------------------------------------------------------

def test_decode_round_trip() -> None:
    pcm = from_samples([0, 1, -1, 32767, -32768])
    frame = decode_frame(encode_frame(7, pcm))
    assert frame.seq == 7 and frame.pcm == pcm
    assert to_samples(frame.pcm) == [0, 1, -1, 32767, -32768]
    assert frame.pcm[6:8] == b"\xff\x7f"  # little-endian


def test_frame_of_100_ms_is_the_largest_accepted() -> None:
    assert MAX_FRAME_BYTES == 3200
    frame = decode_frame(encode_frame(0, b"\x00" * MAX_FRAME_BYTES))
    assert frame.samples == 1600 and frame.duration_ms == 100
    with pytest.raises(BadFrame, match="over 100 ms"):
        decode_frame(encode_frame(0, b"\x00" * (MAX_FRAME_BYTES + 2)))


@pytest.mark.parametrize("payload", [
    "", "not json", "[]", json.dumps({"k": "caption"}),
    json.dumps({"k": "pcm", "s": -1, "r": 16000, "d": "AAA="}),
    json.dumps({"k": "pcm", "s": True, "r": 16000, "d": "AAA="}),
    json.dumps({"k": "pcm", "s": 0, "r": 48000, "d": "AAA="}),
    json.dumps({"k": "pcm", "s": 0, "r": 16000}),
    json.dumps({"k": "pcm", "s": 0, "r": 16000, "d": "!!!"}),
    json.dumps({"k": "pcm", "s": 0, "r": 16000, "d": base64.b64encode(b"\x00\x01\x02").decode()}),
    json.dumps({"k": "pcm", "s": 0, "r": 16000, "d": ""}),
    "x" * 20000,
])
def test_bad_frames_are_refused(payload: str) -> None:
    with pytest.raises(BadFrame):
        decode_frame(payload)


def test_drop_oldest_counts_drops() -> None:
    q = DropOldest(3)
    for i in range(5):
        q.push(bytes([i]))
    assert len(q) == 3 and q.dropped == 2
    assert [q.pop(), q.pop(), q.pop(), q.pop()] == [b"\x02", b"\x03", b"\x04", None]
    with pytest.raises(ValueError):
        DropOldest(0)


def test_sequence_gaps() -> None:
    g = SeqGaps()
    for s in (0, 1, 2, 5, 6, 6, 4, 10):
        g.see(s)
    assert g.missing == 2 + 3 and g.last == 10


# --- analysis -------------------------------------------------------------------------------

@pytest.mark.parametrize("freq", [200.0, 440.0, 443.0, 1000.0, 3150.5])
def test_dominant_frequency(freq: float) -> None:
    assert abs(dominant_frequency(sine(freq, 0.6)) - freq) < 1.0


def test_dominant_frequency_in_a_mix_and_with_noise() -> None:
    import random

    rnd = random.Random(1)
    mix = [a + b + rnd.gauss(0, 800) for a, b in zip(sine(440, 0.6, amplitude=0.3), sine(1000, 0.6, amplitude=0.2))]
    assert abs(dominant_frequency(mix) - 440) < 2
    assert abs(dominant_frequency(mix, lo=700) - 1000) < 2
    with pytest.raises(ValueError):
        dominant_frequency(mix[:100])


def test_goertzel_matches_a_dft_bin() -> None:
    x = sine(500, 0.1)  # 1600 samples: 500 Hz is bin 50 exactly
    re = sum(v * math.cos(2 * math.pi * 50 * i / 1600) for i, v in enumerate(x))
    im = sum(v * math.sin(2 * math.pi * 50 * i / 1600) for i, v in enumerate(x))
    assert goertzel_power(x, SAMPLE_RATE, 500) == pytest.approx(re * re + im * im, rel=1e-6)


def test_tone_fraction_and_rms() -> None:
    tone = sine(440, 0.5, amplitude=0.5)
    assert tone_fraction(tone, 440) > 0.999
    assert rms(tone) == pytest.approx(0.5 * 32767 / math.sqrt(2), rel=1e-3)
    mixed = [a + b for a, b in zip(tone, sine(1000, 0.5, amplitude=0.5))]
    assert tone_fraction(mixed, 440) == pytest.approx(0.5, abs=0.01)
    assert tone_fraction([0.0] * 100, 440) == 0.0 and rms([]) == 0.0


# --- the page script ------------------------------------------------------------------------

def test_hear_script_is_parameterised_and_bounded() -> None:
    js = bridge_js.hear_script(frame_ms=20)
    assert '"__palMeetingAudio"' in js and "FRAME = 320" in js and "RATE = 16000" in js
    assert "__BINDING__" not in js and "__FRAME__" not in js
    assert "getReceivers" in js and "getSenders" not in js  # remote audio only, never the PAL's own
    for bad in (0, 101):
        with pytest.raises(ValueError):
            bridge_js.hear_script(frame_ms=bad)


# --- the tap, fed directly ------------------------------------------------------------------

async def test_tap_delivers_in_order_to_a_sync_sink() -> None:
    got: list[bytes] = []
    tap = AudioTap(got.append)
    tap._pump = asyncio.create_task(tap._run_pump())  # what install() starts
    frames = [from_samples([i] * 800) for i in range(5)]
    for i, pcm in enumerate(frames):
        tap.feed(encode_frame(i, pcm))
    tap.feed("garbage")
    await tap.close()
    assert got == frames
    s = tap.stats
    assert (s.frames, s.delivered, s.bad, s.dropped, s.missing, s.bytes) == (5, 5, 1, 0, 0, 5 * 1600)


async def test_slow_async_sink_loses_oldest_frames_and_never_blocks_feed() -> None:
    release = asyncio.Event()
    got: list[int] = []

    async def slow(pcm: bytes) -> None:
        await release.wait()
        got.append(to_samples(pcm)[0])

    tap = AudioTap(slow, max_frames=4)
    tap._pump = asyncio.create_task(tap._run_pump())
    tap.feed(encode_frame(0, from_samples([0] * 4)))
    await asyncio.sleep(0)  # the pump takes frame 0 and waits inside the sink
    for i in range(1, 11):
        tap.feed(encode_frame(i, from_samples([i] * 4)))  # returns at once: the queue is bounded
    assert tap.pending() == 4 and tap.stats.dropped == 6
    release.set()
    await tap.close()
    assert got == [0, 7, 8, 9, 10]


async def test_failing_sink_is_counted_not_fatal() -> None:
    def broken(pcm: bytes) -> None:
        raise RuntimeError("boom")

    tap = AudioTap(broken)
    tap._pump = asyncio.create_task(tap._run_pump())
    tap.feed(encode_frame(0, b"\x00\x00"))
    tap.feed(encode_frame(2, b"\x00\x00"))
    await tap.close()
    assert tap.stats.sink_errors == 2 and tap.stats.missing == 1


async def test_async_iteration_ends_on_close() -> None:
    tap = AudioTap()
    tap.feed(encode_frame(0, b"\x01\x00"))

    async def consume() -> list[bytes]:
        return [pcm async for pcm in tap]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.01)
    tap.feed(encode_frame(1, b"\x02\x00"))
    await asyncio.sleep(0.01)
    await tap.close()
    assert await asyncio.wait_for(task, 1) == [b"\x01\x00", b"\x02\x00"]
    tap.feed(encode_frame(2, b"\x03\x00"))  # after close: ignored
    assert tap.stats.frames == 2
