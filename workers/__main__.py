"""`python -m workers`: the arq worker (what `python -m app worker` runs)."""

from __future__ import annotations

import sys

from app.logs import setup_logging


def main() -> int:
    setup_logging("worker")
    from workers.runner import run
    from workers.settings import WorkerSettings

    run(WorkerSettings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
