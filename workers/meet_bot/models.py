"""Plain data the bot takes and returns; no I/O here."""

from __future__ import annotations

import shlex
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from app.domain.face_media import FaceMedia  # defined app-side (app/media makes it too); re-exported
from app.domain.join_state import BotFailReason, LeftReason

__all__ = ["BotResult", "BotSettings", "FaceMedia", "FAILED_REASONS", "LEFT_REASONS", "parse_browser_args", "utcnow"]

# Final reasons, grouped by status (the caller stores them verbatim).
# Defined with the rest of the join's life (app/domain/join_state.py), so the APIs' enums know them.
LEFT_REASONS = frozenset(str(r) for r in LeftReason)
FAILED_REASONS = frozenset(str(r) for r in BotFailReason)


@dataclass(frozen=True)
class BotSettings:
    """Knobs for one bot run; the caller fills them from env (CHROMIUM_PATH, BOT_BROWSER_ARGS)."""

    chromium_path: str = "/usr/bin/chromium"
    extra_args: tuple[str, ...] = ()
    headless: bool = True
    waiting_room_timeout: float = 600
    alone_grace: float = 60
    poll_interval: float = 0.5
    prejoin_timeout: float = 60
    voice: str = "en"  # the face's espeak-ng voice, for `Say` (channels.Say)
    # Another voice for `Say` (text, voice) -> 16 kHz PCM, e.g. tts.endpoint_synth; None: espeak-ng.
    synth: Callable[[str, str], Awaitable[bytes]] | None = None
    # The mic goes off this long after the PAL last spoke (Meet shows it muted, as a person would).
    mic_off_after: float = 2.0


@dataclass(frozen=True)
class BotResult:
    """How the run ended: status "left" or "failed", reason one of LEFT_REASONS / FAILED_REASONS."""

    status: str
    reason: str

    @classmethod
    def left(cls, reason: str) -> "BotResult":
        if reason not in LEFT_REASONS:
            raise ValueError(f"not a 'left' reason: {reason!r}")
        return cls("left", reason)

    @classmethod
    def failed(cls, reason: str) -> "BotResult":
        if reason not in FAILED_REASONS:
            raise ValueError(f"not a 'failed' reason: {reason!r}")
        return cls("failed", reason)


def parse_browser_args(value: str | None) -> tuple[str, ...]:
    """Split BOT_BROWSER_ARGS like a shell would, so one flag may contain spaces when quoted."""
    return tuple(shlex.split(value or ""))


def utcnow() -> datetime:
    """Aware UTC now; the default clock of run_meet_bot."""
    return datetime.now(timezone.utc)
