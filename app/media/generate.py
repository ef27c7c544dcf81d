"""Stock face media: a moving likeness video (y4m) and a spoken greeting (wav) per face.

Chromium's fake camera and microphone play these files in the meeting
(--use-file-for-fake-video-capture / --use-file-for-fake-audio-capture). The video is drawn
in pure Python (a cartoon face that sways, blinks and talks, tinted per face) because a y4m
is raw frames: several MB, so it is generated on first use into a cache dir, never committed.
The voice comes from espeak-ng. Both are written atomically, so concurrent bots can share
the cache. This is the only I/O in app.media.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from app.config import get_settings
from app.domain.face_media import FaceMedia

WIDTH, HEIGHT, FPS, SECONDS = 320, 240, 12, 4
# Bump when the drawing or the greeting changes, so caches regenerate.
MEDIA_VERSION = 1
_VOICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9+_\-]{0,49}$")
_KEY_RE = re.compile(r"[^A-Za-z0-9_\-]")


class MediaToolMissing(RuntimeError):
    """A program needed to make face media is not installed."""


def default_cache_dir() -> Path:
    """FACE_MEDIA_CACHE_DIR (Settings.face_media_cache_dir), else a folder under the system temp dir."""
    configured = get_settings().face_media_cache_dir
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "pal-face-media"


def greeting(display_name: str) -> str:
    return f"Hello, I'm {display_name}. Thanks for inviting me."


def ensure_face_media(face_key: str, display_name: str, voice: str, cache_dir: Path) -> FaceMedia:
    """Paths of the face's video and voice, generating whichever is missing (idempotent)."""
    if not _VOICE_RE.match(voice):
        raise ValueError(f"invalid espeak-ng voice name: {voice!r}")
    cache_dir.mkdir(parents=True, exist_ok=True)
    safe = _KEY_RE.sub("_", face_key)[:40] or "face"
    video = cache_dir / f"{safe}-v{MEDIA_VERSION}-{WIDTH}x{HEIGHT}.y4m"
    digest = hashlib.sha256(f"{MEDIA_VERSION}|{voice}|{display_name}".encode()).hexdigest()[:12]
    audio = cache_dir / f"{safe}-{digest}.wav"
    if not video.exists():
        _write_atomic(video, lambda tmp: write_face_y4m(tmp, face_key))
    if not audio.exists():
        _write_atomic(audio, lambda tmp: write_voice_wav(tmp, greeting(display_name), voice))
    return FaceMedia(video_path=video, audio_path=audio)


async def ensure_face_media_async(face_key: str, display_name: str, voice: str, cache_dir: Path) -> FaceMedia:
    """ensure_face_media off the event loop (drawing the video takes about a second)."""
    return await asyncio.to_thread(ensure_face_media, face_key, display_name, voice, cache_dir)


def _write_atomic(dest: Path, write) -> None:  # type: ignore[no-untyped-def]
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a shared cache may serve other users
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_voice_wav(path: Path, text: str, voice: str) -> None:
    """Speak `text` with espeak-ng into a 16-bit mono wav."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise MediaToolMissing(
            "espeak-ng is not installed; it makes the PAL's voice. Install the Debian package "
            "'espeak-ng' (apt-get install espeak-ng)."
        )
    # Text goes through stdin so a name starting with '-' is never read as an option.
    subprocess.run([exe, "-v", voice, "-s", "150", "-w", str(path), "--stdin"], input=text.encode(),
                   check=True, capture_output=True, timeout=60)


# --- drawing -------------------------------------------------------------------------------

def _rgb_to_yuv(r: int, g: int, b: int) -> tuple[int, int, int]:
    y = 16 + (65.738 * r + 129.057 * g + 25.064 * b) / 256
    u = 128 + (-37.945 * r - 74.494 * g + 112.439 * b) / 256
    v = 128 + (112.439 * r - 94.154 * g - 18.285 * b) / 256
    return int(y), int(u), int(v)


def _palette(face_key: str) -> tuple[tuple[int, int, int], ...]:
    """Background, skin, dark features, mouth: the background hue depends on the face."""
    h = int(hashlib.sha256(face_key.encode()).hexdigest()[:4], 16) / 0xFFFF
    bg = tuple(int(90 + 80 * (0.5 + 0.5 * math.sin(2 * math.pi * (h + k / 3)))) for k in range(3))
    return (_rgb_to_yuv(*bg), _rgb_to_yuv(236, 188, 150), _rgb_to_yuv(40, 30, 30), _rgb_to_yuv(170, 40, 50))


def _ellipse(plane: list[bytearray], cx: float, cy: float, rx: float, ry: float, value: int) -> None:
    h, w = len(plane), len(plane[0])
    for y in range(max(0, int(cy - ry)), min(h, int(cy + ry) + 1)):
        d = (y - cy) / ry
        if d * d >= 1:
            continue
        half = rx * math.sqrt(1 - d * d)
        x0, x1 = max(0, int(cx - half)), min(w, int(cx + half) + 1)
        if x1 > x0:
            plane[y][x0:x1] = bytes([value]) * (x1 - x0)


def face_frame(face_key: str, i: int) -> bytes:
    """Frame `i` as planar YUV 4:2:0: the face sways, blinks every 2 s and moves its mouth."""
    bg, skin, dark, mouth = _palette(face_key)
    t = i / FPS
    sway = 18 * math.sin(2 * math.pi * t / SECONDS)
    blink = (t % 2.0) < 0.15
    mouth_open = 3 + 9 * abs(math.sin(2 * math.pi * 2.5 * t))
    planes = []
    for k, scale in ((0, 1), (1, 2), (2, 2)):
        w, h = WIDTH // scale, HEIGHT // scale
        plane = [bytearray([bg[k]]) * w for _ in range(h)]
        cx, cy = (WIDTH / 2 + sway) / scale, (HEIGHT / 2) / scale
        _ellipse(plane, cx, cy, 70 / scale, 90 / scale, skin[k])
        for ex in (-28, 28):
            _ellipse(plane, cx + ex / scale, cy - 25 / scale, 10 / scale, (1.5 if blink else 9) / scale, dark[k])
        _ellipse(plane, cx, cy + 40 / scale, 26 / scale, mouth_open / scale, mouth[k])
        # A band sliding across the bottom keeps frames distinct even when the face is still.
        bx = int((i * 7) % WIDTH) // scale
        for y in range(h - 8 // scale, h):
            plane[y][bx:bx + 20 // scale] = bytes([dark[k]]) * len(plane[y][bx:bx + 20 // scale])
        planes.append(b"".join(plane))
    return b"".join(planes)


def write_face_y4m(path: Path, face_key: str) -> None:
    """A looping few-second y4m (Chromium replays it) of the face."""
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(FPS * SECONDS):
            f.write(b"FRAME\n")
            f.write(face_frame(face_key, i))
