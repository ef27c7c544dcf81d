"""One Chromium, launched through nodriver, that is always torn down completely.

nodriver gives us the CDP plumbing but leaves three holes that matter for hour-long meetings
and many bots per host, all plugged here:
- it PIPEs Chromium's stdout/stderr and never reads them: a full pipe freezes Chromium;
- ``Browser.stop()`` is fire-and-forget: it neither waits for the process nor its children;
- its CDP calls wait forever on a dead renderer, so every call here has a timeout.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import shutil
import tempfile
import weakref
from typing import Any

import nodriver as uc
from nodriver import cdp
from nodriver.core import util as nd_util

from . import procs
from .models import BotSettings, FaceMedia

log = logging.getLogger(__name__)

# Keep Chromium off the network except for the page we open, and quiet.
BASE_ARGS: tuple[str, ...] = (
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-client-side-phishing-detection",
    "--disable-domain-reliability",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
    "--disable-gpu",
    "--disable-blink-features=AutomationControlled",
    "--window-size=1280,720",
    "--autoplay-policy=no-user-gesture-required",
    "--lang=en-US",
    "--accept-lang=en-US,en",
)

CDP_TIMEOUT = 10.0
# nodriver gives Chromium under 3 s to open its DevTools port; many bots starting at once on a
# busy host miss that, so launches are serialised per event loop and retried.
START_ATTEMPTS = 3
_LAUNCH_LOCKS: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]" = weakref.WeakKeyDictionary()


def _launch_lock() -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    lock = _LAUNCH_LOCKS.get(loop)
    if lock is None:
        lock = _LAUNCH_LOCKS[loop] = asyncio.Lock()
    return lock


class BrowserGone(Exception):
    """Chromium exited or its DevTools connection broke."""


def chromium_args(media: FaceMedia, extra: tuple[str, ...]) -> list[str]:
    """Command-line flags: base hygiene, fake camera/mic playing the face's files, then extras."""
    return [
        *BASE_ARGS,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-video-capture={media.video_path}",
        f"--use-file-for-fake-audio-capture={media.audio_path}",
        *extra,
    ]


class ChromiumSession:
    """Async context manager around one nodriver Browser and its throwaway profile."""

    def __init__(self, settings: BotSettings, media: FaceMedia) -> None:
        self.settings = settings
        self.media = media
        self.profile_dir = tempfile.mkdtemp(prefix="pal-meet-bot-")
        self.browser: uc.Browser | None = None
        self.tab: Any = None
        self.pid: int | None = None
        self._drains: list[asyncio.Task[None]] = []
        self.stderr_tail: collections.deque[str] = collections.deque(maxlen=40)
        self._known_pids: set[int] = set()
        self._close_task: asyncio.Future[None] | None = None

    async def __aenter__(self) -> "ChromiumSession":
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                async with _launch_lock():
                    await self._start()
                return self
            except BrowserGone as exc:
                await self.close()
                if attempt == START_ATTEMPTS:
                    raise
                log.warning("meet bot: Chromium start attempt %d failed (%s); retrying", attempt, exc)
                self._reset()
                await asyncio.sleep(attempt)
            except BaseException:
                await self.close()
                raise
        raise AssertionError("unreachable")

    def _reset(self) -> None:
        """Forget a failed launch (already closed) and take a fresh profile for the next one."""
        self.profile_dir = tempfile.mkdtemp(prefix="pal-meet-bot-")
        self.browser, self.tab, self.pid = None, None, None
        self._drains, self._known_pids = [], set()
        self._close_task = None

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _start(self) -> None:
        config = uc.Config(
            browser_executable_path=self.settings.chromium_path,
            headless=self.settings.headless,
            # As root Chromium refuses to sandbox; others keep it (containers without user
            # namespaces can add --no-sandbox through BOT_BROWSER_ARGS).
            sandbox=os.geteuid() != 0,
            user_data_dir=self.profile_dir,
            browser_args=chromium_args(self.media, self.settings.extra_args),
        )
        # Browser(config) + start() instead of uc.start(): if start() fails half-way we still
        # hold the object and so the process to kill.
        self.browser = uc.Browser(config)
        try:
            await asyncio.wait_for(self.browser.start(), 30)
        except Exception as exc:
            raise BrowserGone(f"Chromium did not start: {exc}") from exc
        finally:
            self._after_spawn()
        self.tab = self.browser.main_tab

    def _after_spawn(self) -> None:
        proc = self.browser._process if self.browser else None  # noqa: SLF001 - nodriver exposes no accessor
        if proc is None or self.pid is not None:
            return
        self.pid = proc.pid
        for name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            if stream is not None:
                self._drains.append(asyncio.create_task(self._drain(name, stream)))

    async def _drain(self, name: str, stream: asyncio.StreamReader) -> None:
        with contextlib.suppress(Exception):
            while line := await stream.readline():
                if name == "stderr":
                    self.stderr_tail.append(line.decode(errors="replace").rstrip())

    @property
    def alive(self) -> bool:
        proc = self.browser._process if self.browser else None  # noqa: SLF001
        return proc is not None and proc.returncode is None

    def remember_pids(self) -> None:
        """Snapshot the process tree: once the browser dies, children get re-parented and lost."""
        if self.pid is not None:
            self._known_pids.update(procs.descendants(self.pid))

    async def cdp(self, command: Any, *, timeout: float = CDP_TIMEOUT) -> Any:
        """Send a CDP command to the page; BrowserGone when Chromium is not there to answer."""
        if not self.alive:
            raise BrowserGone("Chromium process exited")
        try:
            return await asyncio.wait_for(self.tab.send(command), timeout)
        except (asyncio.TimeoutError, ConnectionError, OSError, RuntimeError) as exc:
            raise BrowserGone(f"CDP call failed: {exc!r}") from exc
        except Exception as exc:
            # websockets' ConnectionClosed* and nodriver's ProtocolException land here.
            if not self.alive or "ConnectionClosed" in type(exc).__name__:
                raise BrowserGone(f"CDP connection lost: {exc!r}") from exc
            raise

    async def evaluate(self, js: str, *, timeout: float = CDP_TIMEOUT) -> Any:
        """Evaluate JS and return its value; raise instead of returning ExceptionDetails."""
        remote, error = await self.cdp(
            cdp.runtime.evaluate(expression=js, return_by_value=True, user_gesture=True, await_promise=True),
            timeout=timeout,
        )
        if error is not None:
            raise RuntimeError(f"page script failed: {error.text} {getattr(error.exception, 'description', '')}")
        return None if remote is None else remote.value

    async def evaluate_json(self, js: str) -> dict[str, Any]:
        raw = await self.evaluate(js)
        return json.loads(raw) if isinstance(raw, str) else {}

    async def navigate(self, url: str) -> None:
        await self.cdp(cdp.page.navigate(url), timeout=30)

    async def grant_media(self, origin: str) -> None:
        """Grant camera and mic up front, so Meet shows no permission interstitial."""
        for name in ("camera", "microphone"):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    self.browser.connection.send(cdp.browser.set_permission(
                        cdp.browser.PermissionDescriptor(name=name), cdp.browser.PermissionSetting.GRANTED,
                        origin=origin)),
                    CDP_TIMEOUT,
                )

    async def insert_text(self, text: str) -> None:
        await self.cdp(cdp.input_.insert_text(text))

    async def close(self) -> None:
        """Close Chromium, make sure every process of it is dead, drop the profile. Never raises."""
        try:
            await asyncio.shield(self._close())
        except asyncio.CancelledError:
            # The shielded close keeps running; finish it before honouring the cancel.
            with contextlib.suppress(Exception):
                await self._close_task
            raise

    async def _close(self) -> None:
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._do_close())
        await self._close_task

    async def _do_close(self) -> None:
        b = self.browser
        proc = b._process if b else None  # noqa: SLF001
        with contextlib.suppress(Exception):
            self.remember_pids()
        if proc is not None and proc.returncode is None and b is not None and b.connection is not None:
            # Ask politely first: Chromium then flushes and reaps its own children.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(b.connection.send(cdp.browser.close()), 3)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 3)
        if proc is not None and proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 5)
        # Orphaned helpers (renderers, zygotes) of this browser, by tree snapshot or by profile dir.
        leftovers = [p for p in self._known_pids if procs.alive(p)] + procs.pids_with_arg(self.profile_dir)
        procs.kill_all(leftovers)
        for _ in range(20):
            if not any(procs.alive(p) for p in leftovers):
                break
            await asyncio.sleep(0.05)
        if b is not None:
            for conn in [*getattr(b, "targets", []), b.connection]:
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(conn.aclose(), 2)
            with contextlib.suppress(Exception):
                nd_util.get_registered_instances().discard(b)
        for task in self._drains:
            task.cancel()
        for task in self._drains:
            with contextlib.suppress(BaseException):
                await task
        for _ in range(5):
            shutil.rmtree(self.profile_dir, ignore_errors=True)
            if not _exists(self.profile_dir):
                break
            await asyncio.sleep(0.2)
        if self.stderr_tail:
            log.debug("chromium stderr tail:\n%s", "\n".join(self.stderr_tail))


def _exists(path: str) -> bool:
    return os.path.exists(path)
