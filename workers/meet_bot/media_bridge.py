"""The Python end of HEAR: the meeting's remote audio as 16 kHz mono int16 LE PCM.

``AudioTap.install(session)`` must run before the page is opened: it adds the CDP binding
(``Runtime.addBinding``), listens for ``Runtime.bindingCalled`` and registers the hook script
(``Page.addScriptToEvaluateOnNewDocument``, see bridge_js.py). No network request leaves the
page. Frames (at most 100 ms each) are decoded and queued in a bounded drop-oldest queue; a
pump task hands them to ``sink`` (sync, or async: awaited, while new frames queue up), and
``frames()`` is an async iterator for pull-style consumers. A slow consumer only loses the
oldest audio (counted in ``stats.dropped``); it never blocks the CDP listener or the bot.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any

from nodriver import cdp

from . import bridge_js
from .pcm import BadFrame, DropOldest, SeqGaps, decode_frame

log = logging.getLogger(__name__)

AudioSink = Callable[[bytes], "None | Awaitable[None]"]

# 100 frames of 50 ms: 5 s of audio before the oldest is dropped.
DEFAULT_MAX_FRAMES = 100


@dataclass
class TapStats:
    frames: int = 0  # decoded and queued
    bytes: int = 0
    delivered: int = 0  # handed to the sink / iterator
    dropped: int = 0  # oldest frames thrown away because the consumer lagged
    bad: int = 0  # payloads that were not valid frames
    missing: int = 0  # sequence gaps (frames the page made but Python never got)
    sink_errors: int = 0


class AudioTap:
    """Receives the page's PCM frames and hands them on without ever blocking the caller."""

    def __init__(self, sink: AudioSink | None = None, *, frame_ms: int = 50,
                 max_frames: int = DEFAULT_MAX_FRAMES, binding: str = bridge_js.BINDING) -> None:
        self.sink = sink
        self.frame_ms = frame_ms
        self.binding = binding
        self._queue = DropOldest(max_frames)
        self._gaps = SeqGaps()
        self._wake = asyncio.Event()
        self._closed = False
        self._pump: asyncio.Task[None] | None = None
        self._stats = TapStats()
        self._tab: Any = None
        self._script_id: Any = None

    # --- wiring ------------------------------------------------------------------------
    async def install(self, session: Any) -> None:
        """Add binding, event handler and hook script to `session` (a ChromiumSession).

        Call before navigating; raises what session.cdp raises.
        """
        self._tab = session.tab
        self._tab.add_handler(cdp.runtime.BindingCalled, self._on_binding)
        # Chromium 156 ignores addScriptToEvaluateOnNewDocument until the Page domain is enabled.
        # Without Runtime.enable the binding never appears in the page (verified, Chromium 156).
        await session.cdp(cdp.page.enable())
        await session.cdp(cdp.runtime.enable())
        await session.cdp(cdp.runtime.add_binding(self.binding))
        self._script_id = await session.cdp(cdp.page.add_script_to_evaluate_on_new_document(
            bridge_js.hear_script(self.frame_ms)))
        if self.sink is not None and self._pump is None:
            self._pump = asyncio.create_task(self._run_pump(), name="meet-audio-pump")

    def _on_binding(self, event: Any, _connection: Any = None) -> None:
        if event.name != self.binding:
            return
        self.feed(event.payload)

    def feed(self, payload: str) -> None:
        """Take one binding payload (public for tests); never raises."""
        if self._closed:
            return
        try:
            frame = decode_frame(payload)
        except BadFrame as exc:
            self._stats.bad += 1
            if self._stats.bad <= 3:
                log.warning("meet audio: dropping bad frame: %s", exc)
            return
        self._gaps.see(frame.seq)
        self._stats.frames += 1
        self._stats.bytes += len(frame.pcm)
        self._queue.push(frame.pcm)
        self._wake.set()

    # --- consuming ---------------------------------------------------------------------
    @property
    def stats(self) -> TapStats:
        s = self._stats
        s.dropped, s.missing = self._queue.dropped, self._gaps.missing
        return TapStats(**asdict(s))

    def pending(self) -> int:
        return len(self._queue)

    async def get(self) -> bytes | None:
        """The next frame, waiting for one; None once closed and drained."""
        while True:
            pcm = self._queue.pop()
            if pcm is not None:
                self._stats.delivered += 1
                return pcm
            if self._closed:
                return None
            self._wake.clear()
            await self._wake.wait()

    async def frames(self) -> AsyncIterator[bytes]:
        """Async iterator over frames until close(). Use either this or `sink`, not both."""
        while (pcm := await self.get()) is not None:
            yield pcm

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self.frames()

    async def _run_pump(self) -> None:
        assert self.sink is not None
        while (pcm := await self.get()) is not None:
            try:
                result = self.sink(pcm)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken consumer must not take the bot down
                self._stats.sink_errors += 1
                if self._stats.sink_errors <= 3:
                    log.exception("meet audio: sink failed")

    async def page_stats(self, session: Any) -> dict[str, Any]:
        """The page-side counters (frames sent, tracks tapped, worklet or fallback)."""
        raw = await session.evaluate(bridge_js.STATS_JS)
        return json.loads(raw) if isinstance(raw, str) else {}

    async def close(self, drain_timeout: float = 1.0) -> None:
        """Stop taking frames; give the sink up to `drain_timeout` s for what is queued."""
        self._closed = True
        self._wake.set()
        if self._tab is not None:
            with contextlib.suppress(Exception):
                self._tab.remove_handler(cdp.runtime.BindingCalled, self._on_binding)
        pump = self._pump
        if pump is not None:
            try:
                await asyncio.wait_for(asyncio.shield(pump), drain_timeout)
            except asyncio.TimeoutError:
                pass
            finally:  # also when close() itself is cancelled: never leave the pump behind
                if not pump.done():
                    pump.cancel()
            with contextlib.suppress(BaseException):
                await pump
        log.info("meet audio: closed %s", self.stats)
