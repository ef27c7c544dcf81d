"""pytest fixtures for the Meet look-alike; import them into a conftest.py:

    from tests.meet_lookalike.fixtures import meet_lookalike, lookalike_browser_args  # noqa: F401
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .server import MeetLookalike


@pytest.fixture(scope="session")
def meet_lookalike() -> Iterator[MeetLookalike]:
    """A running look-alike for the whole session; configure a fresh code per test."""
    server = MeetLookalike().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def lookalike_browser_args(meet_lookalike: MeetLookalike) -> str:
    """The BOT_BROWSER_ARGS string that points Chromium at the look-alike."""
    return meet_lookalike.browser_args_env()
