"""The bot's side of channels.MediaChannels: one reader of `commands`, guarded callbacks out.

``CommandRouter`` is the only consumer of ``channels.commands``. Each module registers a handler
per command type (READ/CHAT: SendChat; SPEAK: SpeakAudio, Say, Clear) and names a *lane*:
commands of one lane run one after another in queue order, lanes run independently, so a chat
message that waits for the chat panel never holds up speech, and a lane may be flushed
(``router.flush(lane)``, e.g. for barge-in). A handler may be sync or async; its errors are
logged and counted, never raised into the bot. Commands nobody handles are dropped and counted.

``CallbackPump`` hands events to an ``on_*`` callback (sync or async) from a bounded
drop-oldest queue on its own task, so a slow or broken consumer never blocks the CDP listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Handler = Callable[[Any], "None | Awaitable[None]"]


@dataclass
class RouterStats:
    handled: int = 0
    errors: int = 0
    unhandled: int = 0
    flushed: int = 0


class CommandRouter:
    """Reads `queue` once and calls the handler registered for each command's type."""

    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self.queue = queue
        self.stats = RouterStats()
        self._handlers: dict[type, tuple[str, Handler]] = {}
        self._lanes: dict[str, asyncio.Queue[tuple[Handler, Any]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def register(self, kind: type, handler: Handler, *, lane: str | None = None) -> None:
        """Route commands of type `kind` to `handler`, in lane `lane` (default: the type's name)."""
        name = lane or kind.__name__
        self._handlers[kind] = (name, handler)
        self._lanes.setdefault(name, asyncio.Queue())
        if self._tasks:  # registered after start(): give the new lane its worker
            self._start_lane(name)

    def flush(self, lane: str) -> int:
        """Drop what waits in `lane` (not the command running now); returns how many."""
        q = self._lanes.get(lane)
        n = 0
        while q is not None and not q.empty():
            q.get_nowait()
            n += 1
        self.stats.flushed += n
        return n

    def start(self) -> None:
        if self._tasks:
            return
        self._tasks.append(asyncio.create_task(self._read(), name="meet-commands"))
        for name in self._lanes:
            self._start_lane(name)

    def _start_lane(self, name: str) -> None:
        if any(t.get_name() == f"meet-lane-{name}" for t in self._tasks):
            return
        self._tasks.append(asyncio.create_task(self._run_lane(self._lanes[name]), name=f"meet-lane-{name}"))

    async def _read(self) -> None:
        while True:
            cmd = await self.queue.get()
            route = self._handlers.get(type(cmd))
            if route is None:
                self.stats.unhandled += 1
                log.warning("meet commands: nobody handles %s; dropped", type(cmd).__name__)
                continue
            lane, handler = route
            self._lanes[lane].put_nowait((handler, cmd))

    async def _run_lane(self, q: asyncio.Queue[tuple[Handler, Any]]) -> None:
        while True:
            handler, cmd = await q.get()
            try:
                result = handler(cmd)
                if inspect.isawaitable(result):
                    await result
                self.stats.handled += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                self.stats.errors += 1
                log.exception("meet commands: %s failed", type(cmd).__name__)

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t


class CallbackPump(Generic[T]):
    """Delivers items to `callback` in order on its own task; drops the oldest beyond `maxlen`."""

    def __init__(self, callback: Callable[[T], "None | Awaitable[None]"] | None, *, maxlen: int = 1000,
                 name: str = "meet-callback") -> None:
        self.callback = callback
        self.name = name
        self.delivered = self.dropped = self.errors = 0
        self._items: deque[T] = deque()
        self._maxlen = maxlen
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def put(self, item: T) -> None:
        if self.callback is None or self._closed:
            return
        if len(self._items) >= self._maxlen:
            self._items.popleft()
            self.dropped += 1
        self._items.append(item)
        self._wake.set()
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        assert self.callback is not None
        while True:
            while self._items:
                item = self._items.popleft()
                try:
                    result = self.callback(item)
                    if inspect.isawaitable(result):
                        await result
                    self.delivered += 1
                except asyncio.CancelledError:
                    raise
                except Exception:
                    self.errors += 1
                    if self.errors <= 3:
                        log.exception("%s: callback failed", self.name)
            if self._closed:
                return
            self._wake.clear()
            await self._wake.wait()

    async def close(self, drain_timeout: float = 1.0) -> None:
        """Deliver what is queued (up to `drain_timeout` s), then stop."""
        self._closed = True
        self._wake.set()
        task = self._task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), drain_timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            if not task.done():
                task.cancel()
            with contextlib.suppress(BaseException):
                await task
