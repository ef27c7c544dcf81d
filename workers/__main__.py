"""`python -m workers`: the arq worker (what `python -m app worker` runs)."""

from __future__ import annotations

import sys

from app.logs import setup_logging


def main() -> int:
    setup_logging("worker")
    from arq import run_worker

    from workers.settings import WorkerSettings

    run_worker(WorkerSettings)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
