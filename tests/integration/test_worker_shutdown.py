"""The worker's shutdown (workers/runner.py): `on_shutdown` runs even when a job was cancelled
before it started. Real Redis on loopback; no worker process (the SIGTERM test of a real one
is in test_webhook_delivery.py, where this race made it flaky)."""

from __future__ import annotations

import asyncio

from arq import create_pool
from arq.worker import Worker as ArqWorker

from app.queue import redis_settings
from workers.runner import Worker


async def _noop(ctx) -> None:
    return None


async def _close_with_a_cancelled_job(worker_class: type[ArqWorker]) -> list[str]:
    ran: list[str] = []

    async def on_shutdown(ctx) -> None:
        ran.append("on_shutdown")

    pool = await create_pool(redis_settings())
    worker = worker_class(functions=[_noop], redis_pool=pool, on_shutdown=on_shutdown, handle_signals=False,
                          queue_name="pal:test:shutdown")
    # What SIGTERM leaves when it lands while arq reads a job from Redis: a job task ended by
    # CancelledError outside the job's own error handling.
    started = asyncio.Event()

    async def reading_the_job() -> None:
        started.set()
        await asyncio.sleep(3600)

    task = asyncio.create_task(reading_the_job())
    await started.wait()
    task.cancel()
    worker.tasks["job-1"] = task
    try:
        await worker.close()
    except asyncio.CancelledError:
        ran.append("close raised CancelledError")
    finally:
        await pool.aclose()
    return ran


async def test_on_shutdown_runs_although_a_job_was_cancelled(redis_queue):
    assert await _close_with_a_cancelled_job(Worker) == ["on_shutdown"]


async def test_arqs_own_close_skips_on_shutdown_there(redis_queue):
    # Why the subclass exists; if arq fixes this, the subclass can go.
    assert await _close_with_a_cancelled_job(ArqWorker) == ["close raised CancelledError"]
