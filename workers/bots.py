"""Which bot joins which meeting platform.

The platforms themselves (names, which are joinable) are listed in app/domain/platforms.py;
this registry maps each joinable one to the coroutine that runs its bot. Joining Zoom later
is a bot package beside workers/meet_bot, one line here and ``joinable=True`` there; planning,
the API and workers/joins.py stay as they are.

Every bot runner has run_meet_bot's signature: it joins ``meeting_url`` as ``display_name``
showing ``media``, reports "joining" / "waiting_room" / "in_call" through ``on_status``,
leaves at ``leave_at`` or when ``stop`` is set, and returns a BotResult (left / failed and why).
Its browser is gone when it returns, raises or is cancelled.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Protocol

from app.domain.face_media import FaceMedia
from app.domain.platforms import Platform
from workers.meet_bot.bot import run_meet_bot
from workers.meet_bot.models import BotResult, BotSettings


class BotRunner(Protocol):
    def __call__(self, meeting_url: str, display_name: str, media: FaceMedia, settings: BotSettings, *,
                 on_status: Callable[[str, str | None], Awaitable[None]], leave_at: datetime | None = None,
                 stop: asyncio.Event | None = None,
                 clock: Callable[[], datetime] = ...) -> Awaitable[BotResult]: ...


BOTS: dict[str, BotRunner] = {
    Platform.GOOGLE_MEET: run_meet_bot,
}


def bot_for(platform: str | None) -> BotRunner | None:
    """The bot that joins meetings on `platform`, or None when none can (yet)."""
    return BOTS.get(platform) if platform else None
