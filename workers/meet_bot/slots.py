"""BotSlots: cap how many Chromium bots run at once on this host.

Each joined bot is a whole Chromium (see bench/bot_bench.py for its memory), so a worker
should size ``max_bots`` from the host's RAM and CPUs and hold a slot for the whole run:

    slots = BotSlots(4)
    async with slots:
        result = await run_meet_bot(...)
"""

from __future__ import annotations

import asyncio


class BotSlots:
    """An asyncio.Semaphore with a name and counters for health/metrics endpoints."""

    def __init__(self, max_bots: int) -> None:
        if max_bots < 1:
            raise ValueError("max_bots must be at least 1")
        self.max_bots = max_bots
        self._sem = asyncio.Semaphore(max_bots)
        self._in_use = 0

    @property
    def in_use(self) -> int:
        return self._in_use

    @property
    def free(self) -> int:
        return self.max_bots - self._in_use

    def locked(self) -> bool:
        """True when a new bot would have to wait."""
        return self._sem.locked()

    async def acquire(self) -> None:
        await self._sem.acquire()
        self._in_use += 1

    def release(self) -> None:
        self._in_use -= 1
        self._sem.release()

    async def __aenter__(self) -> "BotSlots":
        await self.acquire()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()
