"""app.queue: one arq pool per process, and a fast, honest failure when Redis is away."""

from __future__ import annotations

import asyncio
import socket
import time

from app import queue
from app.config import reset_settings


async def test_concurrent_first_enqueues_share_one_pool(redis_queue) -> None:
    await queue.close_arq_pool()
    pools = await asyncio.gather(*(queue.arq_pool() for _ in range(8)))
    assert len({id(pool) for pool in pools}) == 1
    assert all(await asyncio.gather(*(queue.enqueue("run_join", n, 1, job_id=f"t:{n}") for n in range(8))))
    assert len(await pools[0].queued_jobs()) == 8


def _closed_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again on exit: nothing listens there


async def test_enqueue_without_redis_fails_fast(monkeypatch) -> None:
    await queue.close_arq_pool()
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{_closed_loopback_port()}/15")
    reset_settings()
    try:
        started = time.monotonic()
        results = await asyncio.gather(*(queue.enqueue("run_join", n, 1) for n in range(10)))
        elapsed = time.monotonic() - started
    finally:
        monkeypatch.undo()
        reset_settings()
        await queue.close_arq_pool()
    assert results == [False] * 10
    # Callers wait behind one lock, so a retrying connect would cost each of them seconds.
    assert elapsed < 3, f"10 enqueues took {elapsed:.1f} s with Redis down"
