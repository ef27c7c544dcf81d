"""`Say`: text to 16 kHz mono int16 LE PCM with the face's espeak-ng voice (blocking: use a thread).

espeak-ng is the same program app/media/generate.py uses for the faces' greeting, at the same
speed; its --stdout wav (22050 Hz here) is resampled to the bridge's rate in pure Python.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Awaitable, Callable

from app.domain.face_media import VOICE_PATTERN

from .pcm import SAMPLE_RATE, from_samples, parse_wav, resample, to_samples

MAX_TEXT = 2000  # characters per Say; longer text is cut (a minute of speech or so)
SPEED = 150  # words per minute, as for the faces' greeting
TIMEOUT = 30.0


class TtsError(RuntimeError):
    """espeak-ng is missing or failed."""


def synthesize(text: str, voice: str = "en", *, rate: int = SAMPLE_RATE) -> bytes:
    """Speak `text` with espeak-ng `voice`; PCM at `rate` (b"" for blank text)."""
    text = " ".join(text.split())[:MAX_TEXT]
    if not text:
        return b""
    if not VOICE_PATTERN.match(voice or ""):
        raise TtsError(f"invalid espeak-ng voice name: {voice!r}")
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise TtsError("espeak-ng is not installed (apt-get install espeak-ng)")
    try:
        done = subprocess.run([exe, "-v", voice, "-s", str(SPEED), "--stdout", "--stdin"],
                              input=text.encode(), capture_output=True, timeout=TIMEOUT, check=True)
    except (subprocess.SubprocessError, OSError) as exc:
        raise TtsError(f"espeak-ng failed: {exc}") from exc
    try:
        src_rate, channels, pcm = parse_wav(done.stdout)
    except ValueError as exc:
        raise TtsError(f"espeak-ng wrote no usable wav: {exc}") from exc
    samples = to_samples(pcm)
    if channels > 1:
        samples = samples[::channels]
    if src_rate == rate:
        return pcm if channels == 1 else from_samples(samples)
    return from_samples(resample(samples, src_rate, rate))


async def synthesize_async(text: str, voice: str = "en") -> bytes:
    """synthesize() in a worker thread, so the event loop (and the CDP listener) never waits."""
    return await asyncio.to_thread(synthesize, text, voice)


def endpoint_synth(speak: Callable[[str], Awaitable[bytes]], src_rate: int) -> Callable[[str, str], Awaitable[bytes]]:
    """A Speaker synth from an HTTP voice: `speak(text)` returns PCM at `src_rate`, resampled here
    (off the event loop) to the bridge's rate. The espeak voice name it is given is ignored."""

    async def synth(text: str, _voice: str = "") -> bytes:
        text = " ".join(text.split())[:MAX_TEXT]
        if not text:
            return b""
        pcm = await speak(text)
        if src_rate == SAMPLE_RATE:
            return pcm
        return await asyncio.to_thread(lambda: from_samples(resample(to_samples(pcm), src_rate, SAMPLE_RATE)))

    return synth
