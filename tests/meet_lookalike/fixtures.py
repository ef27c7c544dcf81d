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


@pytest.fixture
async def bot_env(monkeypatch, lookalike_browser_args: str, tmp_path):
    """A worker in this process sends its bots to the look-alike; invites from the test relay count."""
    from app.config import reset_settings

    monkeypatch.setenv("BOT_BROWSER_ARGS", lookalike_browser_args)
    monkeypatch.setenv("MEDIA_DIR", str(tmp_path / "media"))
    monkeypatch.setenv("WAITING_ROOM_TIMEOUT_SECONDS", "30")
    # Test invites carry this relay's verdict: only an authenticated organizer is answered.
    monkeypatch.setenv("TRUSTED_AUTHSERV_IDS", "mx.pal-tests.invalid")
    reset_settings()
    yield
    monkeypatch.delenv("BOT_BROWSER_ARGS")
    reset_settings()


@pytest.fixture
async def invited_pal(clean_db, bot_env):
    """Account acme's PAL Anna (acme-anna@, allowlist *@acme.com): (view, API key)."""
    from app.services import pals as pal_service
    from app.services.accounts import create_account

    account, key = await create_account("acme")
    view = await pal_service.create_pal(account.id, {
        "pal_name": "Anna", "default_face_id": "r90bbd427f71",
        "layers": {"conferencing": {"username": "acme-anna", "allowlist": [".*@acme\\.com"]}},
    })
    return view, key
