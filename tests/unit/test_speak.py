"""SPEAK's pure parts: pacing, chunking, resampling, the mic policy, the speaker without a browser."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
from datetime import datetime
from typing import Any

import pytest

from workers.meet_bot import speak_js
from workers.meet_bot.channels import Clear, MediaChannels, Say, SendChat, SpeakAudio
from workers.meet_bot.pcm import (
    SAMPLE_RATE, dominant_frequency, from_samples, parse_wav, resample, rms, sine, split_pcm, to_samples,
)
from workers.meet_bot.speak import MicPolicy, Pacer, PcmItem, Speaker

# --- pacing and chunking ---------------------------------------------------------------------


def test_pacer_keeps_the_page_queue_under_the_high_mark() -> None:
    p = Pacer(chunk_ms=50, high_ms=200)
    assert p.chunk_bytes == 1600
    assert p.wait(0) == 0  # empty: send at once
    assert p.wait(SAMPLE_RATE * 0.15) == 0  # 150 + 50 fits exactly
    assert p.wait(SAMPLE_RATE * 0.2) == pytest.approx(0.05)
    assert p.wait(SAMPLE_RATE * 0.5) == pytest.approx(0.35)


def test_pacer_rejects_chunks_over_100_ms_or_a_queue_too_small() -> None:
    with pytest.raises(ValueError):
        Pacer(chunk_ms=120)
    with pytest.raises(ValueError):
        Pacer(chunk_ms=100, high_ms=150)


def test_paced_feed_never_holds_more_than_high_ms_and_never_runs_dry() -> None:
    """Simulate the page playing in real time while the pacer feeds it."""
    p = Pacer(chunk_ms=50, high_ms=200)
    queued, t, peak, low = 0.0, 0.0, 0.0, None
    for i in range(100):
        queued += p.chunk_bytes // 2
        peak = max(peak, queued)
        wait = p.wait(queued)
        queued = max(0.0, queued - wait * SAMPLE_RATE)
        t += wait
        if i >= 4:  # after the start-up burst
            low = queued if low is None else min(low, queued)
    assert peak <= SAMPLE_RATE * 0.2
    assert low is not None and low >= SAMPLE_RATE * 0.149
    assert t == pytest.approx(100 * 0.05 - 0.15, abs=0.01)  # real time, minus the 150 ms left queued


def test_split_pcm_cuts_whole_samples_of_at_most_100_ms() -> None:
    pcm = bytes(range(256)) * 30 + b"\x01"  # odd length: the stray byte is dropped
    chunks = split_pcm(pcm, 100)
    assert all(len(c) <= 3200 and len(c) % 2 == 0 for c in chunks)
    assert b"".join(chunks) == pcm[:-1]
    assert [len(c) for c in split_pcm(b"\0" * 8000, 50)] == [1600] * 5


def test_pcm_item_hands_out_chunks_in_order() -> None:
    item = PcmItem(b"abcdefg")  # odd: the last byte is not a sample
    assert item.take(4) == b"abcd" and not item.done
    assert item.take(4) == b"ef" and item.done


# --- resampling and wav ----------------------------------------------------------------------

def test_resample_22050_to_16000_keeps_a_tone_and_its_length() -> None:
    src = sine(440, 1.0, rate=22050, amplitude=0.5)
    out = resample(src, 22050, 16000)
    assert len(out) == 16000
    assert abs(dominant_frequency(out) - 440) <= 2
    assert rms(out) == pytest.approx(rms(src), rel=0.02)


def test_resample_filters_what_the_new_rate_cannot_carry() -> None:
    src = sine(10000, 0.5, rate=22050, amplitude=0.5)  # above 8 kHz: would alias to 6 kHz
    assert rms(resample(src, 22050, 16000)) < 0.1 * rms(src)


def test_resample_edge_cases() -> None:
    assert resample([], 22050, 16000) == []
    assert resample([1, 2, 3], 16000, 16000) == [1.0, 2.0, 3.0]
    assert len(resample([0.0] * 800, 8000, 16000)) == 1600
    with pytest.raises(ValueError):
        resample([1], 0, 16000)


def wav(rate: int, samples: list[int], declared: int | None = None) -> bytes:
    data = struct.pack(f"<{len(samples)}h", *samples)
    size = len(data) if declared is None else declared
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return b"RIFF" + struct.pack("<I", 36 + size) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt \
        + b"data" + struct.pack("<I", size) + data


def test_parse_wav_accepts_espeak_pipe_sizes() -> None:
    assert parse_wav(wav(22050, [1, -2, 3])) == (22050, 1, from_samples([1, -2, 3]))
    # espeak-ng --stdout cannot seek back: it writes 0x7ffff000-ish placeholders.
    assert parse_wav(wav(22050, [5, 6], declared=0x7FFFF000))[2] == from_samples([5, 6])
    with pytest.raises(ValueError):
        parse_wav(b"RIFF\0\0\0\0WAVE")
    with pytest.raises(ValueError):
        parse_wav(b"not a wav at all")


# --- mic policy ------------------------------------------------------------------------------

def test_mic_turns_on_to_speak_and_off_two_seconds_after() -> None:
    m = MicPolicy(off_after=2.0, retry_after=1.0)
    assert m.decide(0.0, busy=False, mic="on") is None  # idle starts now
    assert m.decide(1.9, busy=False, mic="on") is None
    assert m.decide(2.0, busy=False, mic="on") == "off"
    assert m.decide(2.5, busy=False, mic="off") is None
    assert m.decide(3.0, busy=True, mic="off") == "on"
    assert m.decide(3.2, busy=True, mic="on") is None
    assert m.decide(4.0, busy=False, mic="on") is None  # idle again: the 2 s start over
    assert m.decide(5.9, busy=False, mic="on") is None
    assert m.decide(6.0, busy=False, mic="on") == "off"


def test_mic_a_pause_shorter_than_the_delay_keeps_it_on() -> None:
    m = MicPolicy(off_after=2.0)
    m.decide(0.0, busy=True, mic="on")
    m.decide(1.0, busy=False, mic="on")
    assert m.decide(2.5, busy=True, mic="on") is None
    assert m.decide(4.4, busy=False, mic="on") is None


def test_mic_admitted_muted_is_turned_on_when_there_is_speech() -> None:
    m = MicPolicy()
    assert m.decide(0.0, busy=True, mic="off") == "on"
    # The click did not take (label unchanged): retried, but not more than once a second.
    assert m.decide(0.5, busy=True, mic="off") is None
    assert m.decide(1.0, busy=True, mic="off") == "on"


def test_mic_without_a_button_does_nothing() -> None:
    m = MicPolicy()
    assert m.decide(0.0, busy=True, mic="none") is None
    assert m.decide(5.0, busy=False, mic="none") is None


def test_mic_click_js_targets_the_other_label() -> None:
    assert '"turn on microphone"' in speak_js.mic_click_js(True).split("startsWith(")[1]
    assert '"turn off microphone"' in speak_js.mic_click_js(False).split("startsWith(")[1]


# --- the speaker without a browser -----------------------------------------------------------

class FakePage:
    """Stands in for ChromiumSession.evaluate: plays fed audio in (fast) simulated time."""

    def __init__(self, mic: str = "on") -> None:
        self.mic = mic
        self.calls: list[str] = []
        self.fed: list[bytes] = []
        self.queued = 0

    async def evaluate(self, js: str, timeout: float = 0) -> Any:
        if js == speak_js.MIC_STATE_JS:
            return self.mic
        if js == speak_js.FLUSH_JS:
            self.calls.append("flush")
            self.queued = 0
            return 0
        if js.startswith(speak_js._control("feed(")):
            b64 = json.loads(js[len(speak_js._control("feed(")):-1])
            pcm = base64.b64decode(b64)
            self.fed.append(pcm)
            self.calls.append("feed")
            return len(pcm) // 2  # pretend the page had played everything before
        if js == speak_js.mic_click_js(True):
            self.calls.append("mic-on")
            self.mic = "on"
            return "clicked"
        if js == speak_js.mic_click_js(False):
            self.calls.append("mic-off")
            self.mic = "off"
            return "clicked"
        raise AssertionError(js[:80])


def make_speaker(page: FakePage, **kw: Any) -> tuple[Speaker, list[tuple[str, datetime]]]:
    said: list[tuple[str, datetime]] = []
    ch = MediaChannels(on_self_speech=lambda text, at: said.append((text, at)))
    sp = Speaker(ch, "en-us+f3", **kw)
    sp._session = page
    return sp, said


async def wait_until(cond: Any, timeout: float = 3.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.01)


async def test_speaker_feeds_queued_audio_in_order_in_small_chunks() -> None:
    page = FakePage()
    sp, _ = make_speaker(page, chunk_ms=20, high_ms=200)
    a, b = from_samples([1] * 1000), from_samples([2] * 500)
    sp.handle(SpeakAudio(a))
    sp.handle(SpeakAudio(b))
    sp.start()
    await asyncio.sleep(0.05)
    assert page.fed == []  # nothing before the PAL is in the call
    sp.admitted()
    await wait_until(lambda: sum(map(len, page.fed)) == len(a) + len(b))
    await sp.close()
    assert b"".join(page.fed) == a + b
    assert all(len(c) <= 640 for c in page.fed)


async def test_say_is_synthesised_off_the_loop_and_reported_when_it_starts() -> None:
    page = FakePage()
    started: list[str] = []

    async def synth(text: str, voice: str) -> bytes:
        started.append(voice)
        await asyncio.sleep(0.05)
        return from_samples(sine(300, 0.1))

    sp, said = make_speaker(page, synth=synth)
    sp.handle(SpeakAudio(from_samples([7] * 160)))
    sp.handle(Say("hello there"))
    sp.admitted()
    sp.start()
    await wait_until(lambda: said)
    await wait_until(lambda: sum(map(len, page.fed)) == 320 + 3200)
    await sp.close()
    assert started == ["en-us+f3"]
    assert said[0][0] == "hello there"
    assert page.fed[0] == from_samples([7] * 160)  # the audio queued first went first


async def test_clear_flushes_the_page_first_and_drops_everything_queued() -> None:
    page = FakePage()
    sp, said = make_speaker(page, chunk_ms=50)

    async def never(text: str, voice: str) -> bytes:
        await asyncio.sleep(10)
        return b""

    sp.synth = never
    for frame in split_pcm(from_samples(sine(880, 2.0)), 100):
        sp.handle(SpeakAudio(frame))
    sp.handle(Say("pending"))
    sp.admitted()
    sp.start()
    await wait_until(lambda: len(page.fed) >= 3)
    sp.handle(Clear())
    await wait_until(lambda: "flush" in page.calls)
    fed_then = len(page.fed)
    await asyncio.sleep(0.1)
    await sp.close()
    assert len(page.fed) == fed_then  # nothing after the flush
    assert sp.stats.clears == 1 and sp.stats.flushes == 1
    assert not said


async def test_mic_is_turned_on_before_speaking_and_off_after() -> None:
    page = FakePage(mic="off")
    sp, _ = make_speaker(page, mic_off_after=0.2)
    sp.admitted()
    sp.start()
    sp.handle(SpeakAudio(from_samples([3] * 1600)))
    await wait_until(lambda: page.fed)
    assert page.calls[0] == "mic-on"
    await wait_until(lambda: "mic-off" in page.calls)
    await sp.close()
    assert page.calls.index("mic-off") > page.calls.index("feed")


async def test_speaker_refuses_commands_that_are_not_its_own() -> None:
    sp, _ = make_speaker(FakePage())
    with pytest.raises(TypeError):
        sp.handle(SendChat("hi"))


def test_speak_script_is_parameterised() -> None:
    js = speak_js.speak_script()
    assert "__" not in js.replace("__proto__", "")
    assert str(SAMPLE_RATE * speak_js.RING_SECONDS) in js and str(SAMPLE_RATE) in js
    assert "getUserMedia" in js and ".clone()" in js


def test_synthesize_makes_16_khz_speech() -> None:
    import shutil

    from workers.meet_bot import tts
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    pcm = tts.synthesize("hello world", "en-us+f3")
    samples = to_samples(pcm)
    assert 0.4 < len(samples) / SAMPLE_RATE < 3.0
    assert rms(samples) > 500
    assert tts.synthesize("   ", "en") == b""
    with pytest.raises(tts.TtsError):
        tts.synthesize("hi", "bad voice; rm")
    assert math.isfinite(rms(samples))


def test_streamed_voice_that_falls_behind_is_trimmed_not_played_late() -> None:
    from workers.meet_bot.channels import MediaChannels, SpeakAudio
    from workers.meet_bot.speak import Speaker

    sp = Speaker(MediaChannels(), stream_latency_ms=250)
    second = 16_000 * 2
    sp.handle(SpeakAudio(b"\x01\x00" * second))  # a clip is played whole, never trimmed
    sp._trim_stream(page_queued=0)
    assert sp.stats.trimmed_ms == 0
    sp.clear()
    for _ in range(10):  # 1 s of live voice arrived while the mic was coming on
        sp.handle(SpeakAudio(b"\x01\x00" * (second // 20), live=True))
    sp._trim_stream(page_queued=0)
    left = sum(len(i.pcm) - i.pos for i in sp._items)
    assert left == second // 4 and sp.stats.trimmed_ms == 750
    sp._trim_stream(page_queued=16_000 * 0.1)  # 100 ms already waiting in the page
    assert sum(len(i.pcm) - i.pos for i in sp._items) == second * 15 // 100
