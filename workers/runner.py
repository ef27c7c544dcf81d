"""The arq worker process: arq's Worker, with a shutdown that always runs `on_shutdown`."""

from __future__ import annotations

import asyncio
from typing import Any

from arq.worker import Worker as ArqWorker, get_kwargs


class Worker(ArqWorker):
    """On SIGTERM arq cancels every job in flight, then `close()` gathers them and runs
    `on_shutdown`. A job cancelled while arq was still reading it from Redis (the pipeline at
    the top of `run_job`) ends in CancelledError, and arq's gather re-raised it: `on_shutdown`
    never ran, so the deliveries sender's send in flight was never recorded and the pool
    never closed (seen as a flaky test_webhook_delivery SIGTERM test)."""

    async def close(self) -> None:
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
            self.tasks.clear()  # all done: arq's own gather must not re-raise their cancellation
        await super().close()


def run(settings_cls: Any, **overrides: Any) -> Worker:
    worker = Worker(**{**get_kwargs(settings_cls), **overrides})
    worker.run()
    return worker
