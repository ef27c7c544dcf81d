"""Rules for a face's uploaded media: what Chromium's fake camera and microphone can play."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from app.domain.errors import ValidationFailed

MAX_VIDEO_BYTES = 64 * 1024 * 1024  # y4m is raw frames: ~7 MB for 4 s of 320x240 at 12 fps
MAX_AUDIO_BYTES = 8 * 1024 * 1024
MAX_NAME = 100
VOICE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+_\-]{0,49}$")  # an espeak-ng voice, e.g. en-us+f3
_Y4M_HEADER = re.compile(rb"^YUV4MPEG2 (?:[^\n]* )?W(\d+) H(\d+)")


@dataclass(frozen=True)
class FaceMedia:
    """What Chromium's fake camera and microphone play: a y4m video and a wav voice."""

    video_path: Path
    audio_path: Path


def check_face_fields(name: object, voice: object) -> tuple[str, str]:
    if not isinstance(name, str) or not name.strip():
        raise ValidationFailed("name is required.", field="name")
    if len(name) > MAX_NAME:
        raise ValidationFailed(f"name must be at most {MAX_NAME} characters.", field="name")
    if "\x00" in name:
        raise ValidationFailed("name must not contain the NUL character (U+0000).", field="name")
    if voice is None or voice == "":
        voice = "en"
    if not isinstance(voice, str) or not VOICE_PATTERN.match(voice):
        raise ValidationFailed("voice must be an espeak-ng voice name such as 'en-us+f3'.", field="voice")
    return name.strip(), voice


def check_video(data: bytes) -> None:
    """A YUV4MPEG2 (.y4m) file of sane size: what --use-file-for-fake-video-capture plays."""
    if len(data) > MAX_VIDEO_BYTES:
        raise ValidationFailed(f"video must be at most {MAX_VIDEO_BYTES // (1024 * 1024)} MB.", field="video")
    match = _Y4M_HEADER.match(data[:256])
    if not match:
        raise ValidationFailed("video must be a .y4m (YUV4MPEG2) file.", field="video")
    width, height = int(match.group(1)), int(match.group(2))
    if not (16 <= width <= 1920 and 16 <= height <= 1080):
        raise ValidationFailed("video must be between 16x16 and 1920x1080.", field="video")
    if b"FRAME" not in data[:4096 + width * height * 2]:
        raise ValidationFailed("video has no frames.", field="video")


def check_audio(data: bytes) -> None:
    """A RIFF/WAVE file: what --use-file-for-fake-audio-capture plays."""
    if len(data) > MAX_AUDIO_BYTES:
        raise ValidationFailed(f"audio must be at most {MAX_AUDIO_BYTES // (1024 * 1024)} MB.", field="audio")
    if len(data) < 44 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValidationFailed("audio must be a .wav (RIFF/WAVE) file.", field="audio")
