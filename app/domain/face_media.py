"""Rules for a face's uploaded media: what Chromium's fake camera and microphone can play."""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from app.domain.errors import ValidationFailed

MAX_VIDEO_BYTES = 64 * 1024 * 1024  # y4m is raw frames: ~7 MB for 4 s of 320x240 at 12 fps
MAX_AUDIO_BYTES = 8 * 1024 * 1024
MAX_NAME = 100
VOICE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+_\-]{0,49}$")  # an espeak-ng voice, e.g. en-us+f3


@dataclass(frozen=True)
class FaceMedia:
    """What Chromium's fake camera and microphone play: a y4m video and a wav voice."""

    video_path: Path
    audio_path: Path
    voice: str = "en"  # the face's espeak-ng voice: what the PAL's `say` sounds like


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


# What Chromium's fake camera (media/capture/video/file_video_capture_device.cc) can play:
# it reads the header from the first 200 bytes, only I420 (the 4:2:0 variants below),
# frames introduced by a bare "FRAME\n", and it aborts on a partial last frame.
Y4M_MAGIC = b"YUV4MPEG2 "
Y4M_HEADER_MAX = 200
Y4M_FRAME = b"FRAME\n"
Y4M_COLOURSPACES = ("420", "420jpeg", "420mpeg2", "420paldv")
MAX_FPS = 120


def y4m_frame_bytes(width: int, height: int) -> int:
    """Bytes in one 4:2:0 frame: the luma plane, then two chroma planes of half each
    dimension, rounded up (W*H*1.5 for even sizes)."""
    return width * height + 2 * ((width + 1) // 2) * ((height + 1) // 2)


def _video_problem(message: str) -> ValidationFailed:
    return ValidationFailed(message, field="video")


def _y4m_header(data: bytes) -> tuple[int, int, int]:
    """(width, height, offset of the first frame) from a YUV4MPEG2 header line."""
    if not data.startswith(Y4M_MAGIC):
        raise _video_problem("video must be a .y4m (YUV4MPEG2) file.")
    end = data.find(b"\n", 0, Y4M_HEADER_MAX)
    if end < 0:
        raise _video_problem(f"video's YUV4MPEG2 header must be one line of at most {Y4M_HEADER_MAX} bytes.")
    width = height = None
    for token in data[len(Y4M_MAGIC):end].split(b" "):
        if not token:
            raise _video_problem("video's YUV4MPEG2 header has an empty field (two spaces in a row).")
        tag, value = chr(token[0]), token[1:].decode("ascii", "replace")
        if tag in "WH":
            if not value.isdigit() or len(value) > 5:
                raise _video_problem(f"video's YUV4MPEG2 header has a bad {tag} (frame {'width' if tag == 'W' else 'height'}).")
            if tag == "W":
                width = int(value)
            else:
                height = int(value)
        elif tag == "F":
            num, _, den = value.partition(":")
            if not (num.isdigit() and den.isdigit() and len(num) <= 9 and len(den) <= 9
                    and int(den) > 0 and 1 <= int(num) // int(den) <= MAX_FPS):
                raise _video_problem(f"video's frame rate F{value} must be a ratio n:d of 1 to {MAX_FPS} frames per second.")
        elif tag == "I" and value.startswith("m"):
            raise _video_problem("video must not have mixed interlacing (Im); use progressive frames (Ip).")
        elif tag == "C" and value not in Y4M_COLOURSPACES:
            raise _video_problem(f"video's colourspace C{value} cannot be played; use 4:2:0 "
                                 f"({', '.join('C' + c for c in Y4M_COLOURSPACES)}).")
    if width is None or height is None:
        raise _video_problem("video's YUV4MPEG2 header must give the frame size (W and H).")
    if not (16 <= width <= 1920 and 16 <= height <= 1080):
        raise _video_problem("video must be between 16x16 and 1920x1080.")
    return width, height, end + 1


def check_video(data: bytes) -> None:
    """A YUV4MPEG2 (.y4m) file that --use-file-for-fake-video-capture plays: a header the
    camera understands, then one or more complete 4:2:0 frames of the size it declares."""
    if len(data) > MAX_VIDEO_BYTES:
        raise ValidationFailed(f"video must be at most {MAX_VIDEO_BYTES // (1024 * 1024)} MB.", field="video")
    width, height, start = _y4m_header(data)
    if start == len(data):
        raise _video_problem("video has no frames.")
    frame = y4m_frame_bytes(width, height)
    step = len(Y4M_FRAME) + frame
    for number, pos in enumerate(range(start, len(data), step), 1):
        if not data.startswith(Y4M_FRAME, pos):
            if data.startswith(b"FRAME ", pos):
                raise _video_problem(f"video frame {number} has per-frame parameters; only a bare FRAME line can be played.")
            if len(data) - pos < len(Y4M_FRAME) and Y4M_FRAME.startswith(data[pos:]):
                raise _video_problem(f"video is truncated: it ends inside the FRAME line of frame {number}.")
            raise _video_problem(f"video frame {number} does not start with FRAME: after {number - 1} "
                                 f"frame(s) of {frame} bytes ({width}x{height} 4:2:0) something else follows.")
        present = len(data) - pos - len(Y4M_FRAME)
        if present < frame:
            raise _video_problem(f"video is truncated: frame {number} has {present} of the {frame} bytes a "
                                 f"{width}x{height} 4:2:0 frame needs.")


# What Chromium's fake microphone (media/audio/wav_audio_handler.cc) can play.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
MAX_CHANNELS = 32
_WAVE_PCM, _WAVE_FLOAT, _WAVE_EXTENSIBLE = 1, 3, 0xFFFE
_WAVE_BITS = {_WAVE_PCM: (8, 16, 32), _WAVE_FLOAT: (32, 64)}


def _audio_problem(message: str) -> ValidationFailed:
    return ValidationFailed(message, field="audio")


def _wave_format(chunk: bytes) -> int:
    """The bytes per sample frame of a valid 'fmt ' chunk."""
    if len(chunk) < 16:
        raise _audio_problem("audio's 'fmt ' chunk is too short.")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == _WAVE_EXTENSIBLE:
        if len(chunk) < 40:
            raise _audio_problem("audio's extensible 'fmt ' chunk is too short.")
        valid_bits, = struct.unpack_from("<H", chunk, 18)
        tag, = struct.unpack_from("<H", chunk, 24)
        if valid_bits != bits:
            raise _audio_problem("audio must use all the bits of each sample (valid bits = bits per sample).")
    if tag not in _WAVE_BITS:
        raise _audio_problem("audio must be uncompressed PCM (or 32/64-bit float) WAV.")
    if bits not in _WAVE_BITS[tag]:
        allowed = "/".join(str(b) for b in _WAVE_BITS[tag])
        raise _audio_problem(f"audio has {bits} bits per sample; {'PCM' if tag == _WAVE_PCM else 'float'} "
                             f"audio must have {allowed} bits.")
    if not 1 <= channels <= MAX_CHANNELS:
        raise _audio_problem(f"audio must have 1 to {MAX_CHANNELS} channels, not {channels}.")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise _audio_problem(f"audio's sample rate must be {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, not {rate}.")
    return channels * bits // 8


def check_audio(data: bytes) -> None:
    """A RIFF/WAVE file that --use-file-for-fake-audio-capture plays: sizes that match the
    file, a 'fmt ' chunk it supports and a complete, non-empty 'data' chunk."""
    if len(data) > MAX_AUDIO_BYTES:
        raise ValidationFailed(f"audio must be at most {MAX_AUDIO_BYTES // (1024 * 1024)} MB.", field="audio")
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValidationFailed("audio must be a .wav (RIFF/WAVE) file.", field="audio")
    declared = struct.unpack_from("<I", data, 4)[0] + 8
    if declared > len(data):
        raise _audio_problem(f"audio is truncated: its RIFF header says {declared} bytes, the file has {len(data)}.")
    if declared < len(data) - 1:  # one pad byte after an odd-sized last chunk is tolerated
        raise _audio_problem(f"audio has {len(data)} bytes but its RIFF header says {declared}.")
    frame_bytes = samples = None
    pos = 12
    while pos + 8 <= declared:
        tag, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if body + size > declared:
            name = tag.decode("ascii", "replace")
            raise _audio_problem(f"audio is truncated: its {name!r} chunk says {size} bytes, "
                                 f"{declared - body} are present.")
        if tag == b"fmt ":
            frame_bytes = _wave_format(data[body:body + size])
        elif tag == b"data":
            samples = size
        pos = body + size + (size & 1)
    if frame_bytes is None:
        raise _audio_problem("audio has no 'fmt ' chunk: its sample format is unknown.")
    if samples is None:
        raise _audio_problem("audio has no 'data' chunk.")
    if samples == 0:
        raise _audio_problem("audio's 'data' chunk has no samples.")
    if samples % frame_bytes:
        raise _audio_problem(f"audio's 'data' chunk ({samples} bytes) is not a whole number of "
                             f"{frame_bytes}-byte sample frames.")
