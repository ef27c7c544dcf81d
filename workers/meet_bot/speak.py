"""SPEAK: audio from Python played into the meeting as the PAL's microphone, with barge-in.

``Speaker.install(session)`` (before navigating) registers speak_js's getUserMedia override, so
the microphone Meet gets is a track of a page AudioContext fed by Python; the camera stays the
fake capture of the face's y4m. Commands (channels.SpeakAudio / Say / Clear, via ``handle`` or a
CommandRouter) only touch Python state and return at once; one task, started with ``start``,
does all the talking to the page:

* it plays queued items in order: PCM from ``SpeakAudio``, and ``Say`` text synthesised by
  espeak-ng in a worker thread (started as soon as the command arrives, so it overlaps what is
  playing) and reported through ``on_self_speech(text, at)`` when its first chunk is handed to
  the page, ``at`` being when it will be heard;
* chunks of ``chunk_ms`` (≤100 ms) go out with ``Runtime.evaluate``; ``Pacer`` keeps ~150–200 ms
  queued in the page's ring buffer, so there is no gap between frames and little to throw away;
* ``Clear`` empties the Python queue and sends one flush to the page before anything else;
* ``MicPolicy`` clicks Meet's mic button as a person would: on (and wait for the label to flip)
  before speaking, off ``mic_off_after`` s after the last audio played. It reads the button's
  aria-label every time, so a PAL admitted muted (or muted by someone else) unmutes when it talks.

Nothing happens in the page before ``admitted()`` (the bot calls it when it is in the call):
commands arriving earlier wait, and the pre-join screen stays the flow's business.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from nodriver import cdp

from . import speak_js
from .browser import BrowserGone
from .channels import Clear, MediaChannels, Say, SpeakAudio
from .models import utcnow
from .pcm import MAX_FRAME_MS, SAMPLE_RATE, SAMPLE_WIDTH
from .tts import synthesize_async

log = logging.getLogger(__name__)

Synth = Callable[[str, str], Awaitable[bytes]]
LANE = "speak"


# --- pure logic --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pacer:
    """How long to wait before the next chunk so the page queue stays within `high_ms`."""

    chunk_ms: int = 50
    high_ms: int = 200
    rate: int = SAMPLE_RATE

    def __post_init__(self) -> None:
        if not 1 <= self.chunk_ms <= MAX_FRAME_MS:
            raise ValueError(f"chunk_ms must be within 1..{MAX_FRAME_MS}")
        if self.high_ms < 2 * self.chunk_ms:
            raise ValueError("high_ms must hold at least two chunks")

    @property
    def chunk_bytes(self) -> int:
        return self.rate * self.chunk_ms // 1000 * SAMPLE_WIDTH

    def wait(self, queued_samples: float) -> float:
        """Seconds until one more chunk fits under `high_ms` (0: send now)."""
        excess = queued_samples + self.rate * self.chunk_ms / 1000 - self.rate * self.high_ms / 1000
        return max(0.0, excess / self.rate)


class MicPolicy:
    """When to click the mic: on while there is something to say, off `off_after` s after that.

    ``decide`` gets the mic's state as the page shows it ("on", "off" or "none" when there is no
    button) and returns "on", "off" or None; a click is not repeated within `retry_after` s.
    """

    def __init__(self, off_after: float = 2.0, retry_after: float = 1.0) -> None:
        self.off_after = off_after
        self.retry_after = retry_after
        self.idle_since: float | None = None
        self.last_click = float("-inf")

    def decide(self, now: float, busy: bool, mic: str) -> str | None:
        if busy:
            self.idle_since = None
            want: str | None = "on"
        else:
            if self.idle_since is None:
                self.idle_since = now
            want = "off" if now - self.idle_since >= self.off_after else None
        if want is None or mic not in ("on", "off") or mic == want:
            return None
        if now - self.last_click < self.retry_after:
            return None
        self.last_click = now
        return want


class PcmItem:
    """One queued utterance: PCM (or a pending synthesis of `text`) consumed chunk by chunk."""

    def __init__(self, pcm: bytes = b"", text: str | None = None,
                 task: asyncio.Future[bytes] | None = None, live: bool = False) -> None:
        self.pcm = pcm[: len(pcm) // SAMPLE_WIDTH * SAMPLE_WIDTH]
        self.live = live
        self.pos = 0
        self.text = text
        self.task = task
        self.reported = False

    @property
    def ready(self) -> bool:
        return self.task is None

    def take(self, max_bytes: int) -> bytes:
        chunk = self.pcm[self.pos:self.pos + max_bytes]
        self.pos += len(chunk)
        return chunk

    @property
    def done(self) -> bool:
        return self.ready and self.pos >= len(self.pcm)


# --- the speaker ---------------------------------------------------------------------------------

@dataclass
class SpeakStats:
    items: int = 0  # SpeakAudio + Say accepted
    chunks: int = 0  # handed to the page
    bytes: int = 0
    clears: int = 0
    flushes: int = 0  # flushes sent to the page
    said: int = 0  # on_self_speech reports
    tts_errors: int = 0
    page_errors: int = 0
    mic_clicks_on: int = 0
    mic_clicks_off: int = 0
    late: int = 0  # a chunk sent while the page queue of an ongoing utterance had run dry
    trimmed_ms: int = 0  # streamed audio dropped because it was later than stream_latency_ms


class Speaker:
    def __init__(self, channels: MediaChannels, voice: str = "en", *, chunk_ms: int = 50,
                 high_ms: int = 200, stream_chunk_ms: int = 20, stream_high_ms: int = 60,
                 stream_latency_ms: int = 100,
                 mic_off_after: float = 2.0, synth: Synth | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.channels = channels
        self.voice = voice
        self.pacer = Pacer(chunk_ms, high_ms)
        # A client streaming its voice in real time wants it heard now, not smooth: a shorter
        # page queue, and what falls further behind than stream_latency_ms is dropped rather
        # than played late forever (the ring buffer never skips on its own).
        self.stream_pacer = Pacer(stream_chunk_ms, max(stream_high_ms, 2 * stream_chunk_ms))
        self.stream_latency_ms = stream_latency_ms
        self.mic = MicPolicy(mic_off_after)
        self.synth = synth or synthesize_async
        self.clock = clock
        self.stats = SpeakStats()
        self.mic_state = "unknown"
        self.last_clear_at: float | None = None  # clock() when Clear was handled
        self.last_flush_at: float | None = None  # clock() when the page flush returned
        self._items: deque[PcmItem] = deque()
        self._flush_pending = False
        self._queued = 0.0  # page queue (samples) as of _queued_at
        self._queued_at = 0.0
        self._in_call = asyncio.Event()
        self._wake = asyncio.Event()
        self._closed = False
        self._task: asyncio.Task[None] | None = None
        self._session: Any = None
        self._playing = False  # an utterance is being fed
        self._mic_read_at = float("-inf")
        self._callbacks: set[asyncio.Future[None]] = set()
        self._reported_busy = False  # what on_speaking last said

    # --- wiring ------------------------------------------------------------------------------
    async def install(self, session: Any) -> None:
        """Register the getUserMedia override; call before navigating."""
        self._session = session
        await session.cdp(cdp.page.enable())
        await session.cdp(cdp.runtime.enable())
        await session.cdp(cdp.page.add_script_to_evaluate_on_new_document(speak_js.speak_script()))

    def register(self, router: Any) -> None:
        """Take SpeakAudio, Say and Clear from a commands.CommandRouter, in one lane."""
        for kind in (SpeakAudio, Say, Clear):
            router.register(kind, self.handle, lane=LANE)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="meet-speak")

    def admitted(self) -> None:
        """The PAL is in the call: from now on the page is fed and the mic is managed."""
        self._in_call.set()
        self._wake.set()

    async def close(self) -> None:
        self._closed = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        for item in self._items:
            if item.task is not None:
                item.task.cancel()
        self._items.clear()
        log.info("meet speak: closed %s", asdict(self.stats))

    # --- commands (never block) --------------------------------------------------------------
    def handle(self, cmd: Any) -> None:
        if isinstance(cmd, SpeakAudio):
            if len(cmd.pcm) >= SAMPLE_WIDTH:
                self._items.append(PcmItem(cmd.pcm, live=cmd.live))
                self.stats.items += 1
        elif isinstance(cmd, Say):
            if cmd.text.strip():
                task = asyncio.ensure_future(self.synth(cmd.text, self.voice))
                task.add_done_callback(lambda _t: self._wake.set())
                self._items.append(PcmItem(text=cmd.text, task=task))
                self.stats.items += 1
        elif isinstance(cmd, Clear):
            self.clear()
        else:
            raise TypeError(f"Speaker does not handle {type(cmd).__name__}")
        self._wake.set()

    def clear(self) -> None:
        """Barge-in: drop everything queued here and, first thing, what waits in the page."""
        for item in self._items:
            if item.task is not None:
                item.task.cancel()
        self._items.clear()
        self._flush_pending = True
        self._playing = False
        self.last_clear_at = self.clock()
        self.stats.clears += 1
        self._wake.set()

    # --- state -------------------------------------------------------------------------------
    def page_queued(self) -> float:
        """Samples still waiting in the page, estimated from the last report and the time since."""
        return max(0.0, self._queued - (self.clock() - self._queued_at) * SAMPLE_RATE)

    def busy(self) -> bool:
        return bool(self._items) or self.page_queued() > 0

    async def page_stats(self) -> dict[str, Any]:
        raw = await self._session.evaluate(speak_js.STATS_JS)
        return json.loads(raw) if isinstance(raw, str) else {}

    # --- the task ----------------------------------------------------------------------------
    async def _eval(self, js: str) -> Any:
        return await self._session.evaluate(js, timeout=5)

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _run(self) -> None:
        await self._in_call.wait()
        errors_in_row = 0
        while not self._closed:
            self._wake.clear()
            try:
                delay = await self._step()
                errors_in_row = 0
            except asyncio.CancelledError:
                raise
            except BrowserGone:
                log.info("meet speak: browser gone; stopping")
                return
            except Exception:
                self.stats.page_errors += 1
                errors_in_row += 1
                if self.stats.page_errors <= 3:
                    log.exception("meet speak: page call failed")
                delay = min(2.0, 0.2 * errors_in_row)
            busy = self.busy()
            if busy != self._reported_busy:
                self._reported_busy = busy
                self._callback(self.channels.on_speaking, busy)
                if busy:  # wake when the page queue should have drained, to report the end promptly
                    delay = min(delay, 0.25)
            await self._sleep(delay)

    async def _step(self) -> float:
        """Do the next thing; return how long to wait (woken early by any command)."""
        if self._flush_pending:
            self._flush_pending = False
            await self._eval(speak_js.FLUSH_JS)
            self._set_queued(0)
            self.last_flush_at = self.clock()
            self.stats.flushes += 1
        head = self._head()
        # The mic first: it comes on while the first sentence is still being synthesised.
        mic_ready = await self._mic_step()
        if head is not None and not head.ready:
            return 0.5  # synthesis running; woken when it ends
        if not mic_ready:
            return 0.1  # waiting for the mic to come on
        if head is None:
            self._playing = False
            return 0.25 if self.mic_state == "on" else 0.5
        queued = self.page_queued()
        if self._playing and queued <= 0:
            self.stats.late += 1
        streamed = head.live
        if streamed:
            self._trim_stream(queued)
            head = self._head()
            if head is None:
                return 0.05
        pacer = self.stream_pacer if streamed else self.pacer
        chunk = head.take(pacer.chunk_bytes)
        if head.text is not None and not head.reported:
            head.reported = True
            self._report_self_speech(head.text, queued / SAMPLE_RATE)
        if head.done:
            self._items.popleft()
        if chunk:
            now_q = await self._eval(speak_js.feed_js(base64.b64encode(chunk).decode()))
            self._set_queued(float(now_q or 0))
            self.stats.chunks += 1
            self.stats.bytes += len(chunk)
            self._playing = True
        return pacer.wait(self._queued)

    def _trim_stream(self, page_queued: float) -> None:
        """Drop the oldest streamed PCM beyond stream_latency_ms of backlog (page + here)."""
        backlog = page_queued * SAMPLE_WIDTH
        for item in self._items:
            if not item.live:
                break
            backlog += len(item.pcm) - item.pos
        limit = SAMPLE_RATE * SAMPLE_WIDTH * self.stream_latency_ms // 1000
        excess = int(backlog - limit) // SAMPLE_WIDTH * SAMPLE_WIDTH
        while excess > 0 and self._items and self._items[0].live:
            head = self._items[0]
            step = min(excess, len(head.pcm) - head.pos)
            head.pos += step
            excess -= step
            self.stats.trimmed_ms += step * 1000 // (SAMPLE_RATE * SAMPLE_WIDTH)
            if head.done:
                self._items.popleft()

    def _head(self) -> PcmItem | None:
        """The first item with something to play; finished syntheses become PCM here."""
        while self._items:
            head = self._items[0]
            if head.task is not None and head.task.done():
                task, head.task = head.task, None
                try:
                    head.pcm = task.result()
                except (Exception, asyncio.CancelledError):
                    self.stats.tts_errors += 1
                    log.exception("meet speak: synthesis of %r failed", (head.text or "")[:40])
                    head.pcm = b""
            if head.done:
                self._items.popleft()
                continue
            return head
        return None

    def _set_queued(self, samples: float) -> None:
        self._queued, self._queued_at = samples, self.clock()

    async def _mic_step(self) -> bool:
        """Read the mic button, click it if the policy says so; False while speech must wait."""
        busy = self.busy()
        now = self.clock()
        if now - self._mic_read_at >= 0.5 or (busy and self.mic_state != "on"):
            self.mic_state = str(await self._eval(speak_js.MIC_STATE_JS))
            self._mic_read_at = now
        action = self.mic.decide(self.clock(), busy, self.mic_state)
        if action is not None:
            log.info("meet speak: turning the microphone %s", action)
            result = await self._eval(speak_js.mic_click_js(action == "on"))
            if result == "clicked":
                if action == "on":
                    self.stats.mic_clicks_on += 1
                else:
                    self.stats.mic_clicks_off += 1
            if action == "on":  # Meet flips the label once the device answers
                end = self.clock() + 2.0
                while self.clock() < end and not self._flush_pending:
                    await asyncio.sleep(0.1)
                    self.mic_state = str(await self._eval(speak_js.MIC_STATE_JS))
                    if self.mic_state == "on":
                        break
        # No button at all (some layouts): speak anyway; a mic that stays off is retried later.
        return not busy or self.mic_state in ("on", "none") or self.clock() - self.mic.last_click >= 2.0

    def _report_self_speech(self, text: str, delay: float) -> None:
        self.stats.said += 1
        self._callback(self.channels.on_self_speech, text, utcnow() + timedelta(seconds=delay))

    def _callback(self, cb: Any, *args: Any) -> None:
        """Call a channel callback (sync or async) on its own task; its errors are logged only."""
        if cb is None:
            return

        async def call() -> None:
            try:
                result = cb(*args)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("meet speak: callback %s failed", getattr(cb, "__name__", cb))

        fut = asyncio.ensure_future(call())
        self._callbacks.add(fut)
        fut.add_done_callback(self._callbacks.discard)
