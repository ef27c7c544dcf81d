"""Retry delays, jittered so that retries of many failures at once do not land together."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import timedelta


def jittered(delay: float, *, rng: Callable[[], float] = random.random) -> float:
    """`delay` with jitter: somewhere in [delay / 2, delay]."""
    return delay / 2 + delay / 2 * rng()


def doubling(attempts: int, *, first: float, cap: float, rng: Callable[[], float] = random.random) -> timedelta:
    """After `attempts` failures: `first`, doubling each time up to `cap`, jittered."""
    return timedelta(seconds=jittered(min(first * 2 ** max(attempts - 1, 0), cap), rng=rng))
