"""Pure helpers for the meeting's audio (HEAR): frame decoding, a bounded queue, tone analysis.

No I/O and no third-party imports, so all of it is unit-tested without a browser.

Frame format (what the page hands to Python through the CDP binding, one call per frame):
    {"k": "pcm", "s": <sequence number>, "r": 16000, "d": "<base64 of int16 little-endian mono>"}
"""

from __future__ import annotations

import base64
import binascii
import collections
import json
import math
import operator
import struct
from itertools import repeat
from collections.abc import Sequence
from dataclasses import dataclass

SAMPLE_RATE = 16000
SAMPLE_WIDTH = 2  # signed 16-bit little-endian
MAX_FRAME_MS = 100
MAX_FRAME_BYTES = SAMPLE_RATE * MAX_FRAME_MS // 1000 * SAMPLE_WIDTH  # 3200 bytes


class BadFrame(ValueError):
    """A binding payload that is not a valid PCM frame."""


@dataclass(frozen=True)
class PcmFrame:
    seq: int
    pcm: bytes  # int16 LE mono at SAMPLE_RATE

    @property
    def samples(self) -> int:
        return len(self.pcm) // SAMPLE_WIDTH

    @property
    def duration_ms(self) -> float:
        return self.samples * 1000 / SAMPLE_RATE


def decode_frame(payload: str) -> PcmFrame:
    """Parse one binding payload; BadFrame if it is malformed, at another rate or over 100 ms."""
    if len(payload) > 4 * MAX_FRAME_BYTES:  # far above any valid frame: refuse before parsing
        raise BadFrame("payload too large")
    try:
        data = json.loads(payload)
    except ValueError as exc:
        raise BadFrame(f"not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("k") != "pcm":
        raise BadFrame("not a pcm frame")
    seq, rate, b64 = data.get("s"), data.get("r"), data.get("d")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise BadFrame("bad sequence number")
    if rate != SAMPLE_RATE:
        raise BadFrame(f"sample rate {rate!r}, expected {SAMPLE_RATE}")
    if not isinstance(b64, str):
        raise BadFrame("no data")
    try:
        pcm = base64.b64decode(b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadFrame(f"bad base64: {exc}") from exc
    if not pcm or len(pcm) % SAMPLE_WIDTH:
        raise BadFrame(f"odd or empty length {len(pcm)}")
    if len(pcm) > MAX_FRAME_BYTES:
        raise BadFrame(f"frame of {len(pcm)} bytes is over {MAX_FRAME_MS} ms")
    return PcmFrame(seq, pcm)


def encode_frame(seq: int, pcm: bytes, rate: int = SAMPLE_RATE) -> str:
    """The page's encoding, for tests."""
    return json.dumps({"k": "pcm", "s": seq, "r": rate, "d": base64.b64encode(pcm).decode()})


class DropOldest:
    """A bounded FIFO: when full, the oldest item goes and `dropped` counts it."""

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self._items: collections.deque[bytes] = collections.deque()
        self.maxlen = maxlen
        self.dropped = 0

    def push(self, item: bytes) -> None:
        if len(self._items) >= self.maxlen:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)

    def pop(self) -> bytes | None:
        return self._items.popleft() if self._items else None

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class SeqGaps:
    """Counts frames lost between page and Python from the page's sequence numbers."""

    def __init__(self) -> None:
        self.last: int | None = None
        self.missing = 0

    def see(self, seq: int) -> None:
        if self.last is not None and seq > self.last + 1:
            self.missing += seq - self.last - 1
        if self.last is None or seq > self.last:
            self.last = seq


# --- analysis (used by tests and for diagnostics) --------------------------------------------

def to_samples(pcm: bytes) -> list[int]:
    n = len(pcm) // SAMPLE_WIDTH
    return list(struct.unpack(f"<{n}h", pcm[: n * SAMPLE_WIDTH]))


def from_samples(samples: Sequence[float]) -> bytes:
    clipped = [max(-32768, min(32767, int(round(s)))) for s in samples]
    return struct.pack(f"<{len(clipped)}h", *clipped)


def sine(freq: float, seconds: float, rate: int = SAMPLE_RATE, amplitude: float = 0.5,
         phase: float = 0.0) -> list[float]:
    """A test tone as int16-scaled floats."""
    n = int(seconds * rate)
    return [amplitude * 32767 * math.sin(2 * math.pi * freq * i / rate + phase) for i in range(n)]


def rms(samples: Sequence[float]) -> float:
    """Root mean square on the int16 scale (full-scale sine = 23170)."""
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


def goertzel_power(samples: Sequence[float], rate: int, freq: float) -> float:
    """|X(f)|^2 of `samples` (already windowed if wanted) at any frequency f."""
    w = 2 * math.pi * freq / rate
    coeff = 2 * math.cos(w)
    s1 = s2 = 0.0
    for x in samples:
        s1, s2 = x + coeff * s1 - s2, s1
    return s1 * s1 + s2 * s2 - coeff * s1 * s2


def _hann(samples: Sequence[float]) -> list[float]:
    n = len(samples)
    if n < 2:
        return list(samples)
    return [s * (0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1))) for i, s in enumerate(samples)]


def dominant_frequency(samples: Sequence[float], rate: int = SAMPLE_RATE, lo: float = 50.0,
                       hi: float = 4000.0) -> float:
    """The strongest frequency in [lo, hi], to about 1 Hz; pure Python, so keep inputs short.

    Coarse 10 Hz scan over a 100 ms Hann-windowed slice, then a 1 Hz scan around the best bin over
    up to 0.5 s, then a parabolic fit of the three top values.
    """
    if len(samples) < rate // 50:
        raise ValueError("need at least 20 ms of samples")
    mid = len(samples) // 2
    coarse = _hann(samples[max(0, mid - rate // 20): mid + rate // 20])
    steps = int((hi - lo) // 10) + 1
    best = max((lo + 10 * k for k in range(steps)), key=lambda f: goertzel_power(coarse, rate, f))
    fine = _hann(samples[max(0, mid - rate // 4): mid + rate // 4])
    cands = [best + d for d in range(-12, 13)]
    powers = [goertzel_power(fine, rate, f) for f in cands]
    i = max(range(len(cands)), key=powers.__getitem__)
    if 0 < i < len(cands) - 1:
        a, b, c = powers[i - 1], powers[i], powers[i + 1]
        denom = a - 2 * b + c
        if denom < 0:
            return cands[i] + 0.5 * (a - c) / denom
    return float(cands[i])


def tone_fraction(samples: Sequence[float], freq: float, rate: int = SAMPLE_RATE) -> float:
    """Share of the signal's energy explained by a sinusoid at `freq` (least-squares fit), 0..1."""
    n = len(samples)
    total = sum(s * s for s in samples)
    if n == 0 or total == 0:
        return 0.0
    w = 2 * math.pi * freq / rate
    cc = ss = cs = xc = xs = 0.0
    for i, x in enumerate(samples):
        c, s = math.cos(w * i), math.sin(w * i)
        cc += c * c
        ss += s * s
        cs += c * s
        xc += x * c
        xs += x * s
    det = cc * ss - cs * cs
    if det == 0:
        return 0.0
    a = (xc * ss - xs * cs) / det
    b = (xs * cc - xc * cs) / det
    explained = a * xc + b * xs  # projection energy
    return max(0.0, min(1.0, explained / total))


# --- SPEAK helpers: the PAL's own voice going into the meeting ----------------------------------

def _lowpass_taps(cutoff: float, taps: int) -> list[float]:
    """A Hann-windowed sinc low-pass, `cutoff` as a fraction of the sample rate (0..0.5), unit DC gain."""
    mid = (taps - 1) / 2
    h = []
    for i in range(taps):
        x = i - mid
        v = 2 * cutoff if x == 0 else math.sin(2 * math.pi * cutoff * x) / (math.pi * x)
        h.append(v * (0.5 - 0.5 * math.cos(2 * math.pi * i / (taps - 1))))
    total = sum(h)
    return [v / total for v in h]


def resample(samples: Sequence[float], src_rate: int, dst_rate: int = SAMPLE_RATE, taps: int = 15) -> list[float]:
    """Resample mono audio by linear interpolation, low-passed first when going down.

    Pure Python, but each filter tap and the interpolation run as C-level `map`s over whole
    lists (~0.1 s for 3 s of speech instead of ~0.4 s sample by sample): a spoken answer's first
    sentence waits for this. The output has round(len * dst / src) samples; the filter is centred.
    """
    if src_rate <= 0 or dst_rate <= 0:
        raise ValueError("sample rates must be positive")
    x: list[float] = [float(s) for s in samples]
    if not x or src_rate == dst_rate:
        return x
    n = len(x)
    if dst_rate < src_rate and n > taps:
        h = _lowpass_taps(0.45 * dst_rate / src_rate, taps)
        half = taps // 2
        padded = [0.0] * half + x + [0.0] * half
        acc = list(map(operator.mul, repeat(h[0], n), padded[0:n]))
        for k in range(1, taps):
            acc = list(map(operator.add, acc, map(operator.mul, repeat(h[k], n), padded[k:k + n])))
        x = acc
    n_out = int(round(n * dst_rate / src_rate))
    step = src_rate / dst_rate
    last = n - 1
    positions = [j * step for j in range(n_out)]
    index = [min(int(p), last) for p in positions]
    nxt = [min(i + 1, last) for i in index]
    frac = list(map(operator.sub, positions, index))
    left = [x[i] for i in index]
    right = [x[i] for i in nxt]
    # left + (right - left) * frac; at or past the end both neighbours are the last sample
    return list(map(operator.add, left, map(operator.mul, map(operator.sub, right, left), frac)))


def parse_wav(data: bytes) -> tuple[int, int, bytes]:
    """(sample rate, channels, int16 LE data) of a 16-bit PCM wav.

    Tolerates the placeholder sizes espeak-ng writes to a pipe (--stdout): the data chunk is taken
    to run to the end of the file when its declared size is larger than what is there.
    """
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a RIFF/WAVE file")
    pos, rate, channels, bits = 12, None, None, None
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        body = pos + 8
        if tag == b"fmt ":
            fmt, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", data, body)
            if fmt != 1 or bits != 16:
                raise ValueError("only 16-bit PCM wav is supported")
        elif tag == b"data":
            if rate is None or channels is None:
                raise ValueError("data before fmt")
            pcm = data[body:body + size] if body + size <= len(data) else data[body:]
            frame = 2 * channels
            return rate, channels, pcm[: len(pcm) // frame * frame]
        pos = body + size + (size & 1)
    raise ValueError("no data chunk")


def split_pcm(pcm: bytes, max_ms: int = MAX_FRAME_MS, rate: int = SAMPLE_RATE) -> list[bytes]:
    """Cut PCM into whole-sample chunks of at most `max_ms` (the last may be shorter)."""
    size = max(SAMPLE_WIDTH, rate * max_ms // 1000 * SAMPLE_WIDTH)
    pcm = pcm[: len(pcm) // SAMPLE_WIDTH * SAMPLE_WIDTH]
    return [pcm[i:i + size] for i in range(0, len(pcm), size)]


def wav_to_pcm(data: bytes, rate: int = SAMPLE_RATE) -> bytes:
    """A 16-bit PCM wav (any rate, mono or stereo) as mono s16le at `rate`: what the mic plays."""
    src_rate, channels, pcm = parse_wav(data)
    samples = to_samples(pcm)
    if channels > 1:
        samples = [sum(samples[i:i + channels]) / channels for i in range(0, len(samples), channels)]
    if src_rate != rate:
        samples = resample(samples, src_rate, rate)
    return from_samples(samples)
