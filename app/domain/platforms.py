"""Meeting platforms, listed once: which ones we recognise, what they are called, which we can join.

Pure, no I/O. Link classification (app/domain/meeting_links.py), invitation decisions
(app/domain/decisions.py), planning and the API ask this module whether a platform can be
joined; the worker maps each joinable platform to a bot (workers/bots.py). Joining a new
platform means: a bot package, one line in workers/bots.py, and ``joinable=True`` here.
Values are ``StrEnum`` members, stored and sent as their plain strings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Platform(StrEnum):
    GOOGLE_MEET = "google_meet"
    ZOOM = "zoom"
    TEAMS = "teams"
    OTHER = "other"  # a link, but to no meeting platform we recognise


@dataclass(frozen=True)
class PlatformInfo:
    platform: Platform
    display_name: str
    joinable: bool


# In order of preference when several are mentioned in one text.
PLATFORMS: tuple[PlatformInfo, ...] = (
    PlatformInfo(Platform.GOOGLE_MEET, "Google Meet", joinable=True),
    PlatformInfo(Platform.ZOOM, "Zoom", joinable=False),
    PlatformInfo(Platform.TEAMS, "Microsoft Teams", joinable=False),
)

_BY_KEY = {info.platform: info for info in PLATFORMS}
KNOWN_PLATFORMS = frozenset(_BY_KEY)
JOINABLE_PLATFORMS = frozenset(p for p, info in _BY_KEY.items() if info.joinable)
UNKNOWN_PLATFORM_NAME = "an unrecognised platform"



def is_known(platform: str | None) -> bool:
    """A platform we recognise in links, joinable or not."""
    return platform in KNOWN_PLATFORMS


def is_joinable(platform: str | None) -> bool:
    """Can a PAL be sent into a meeting on this platform today?"""
    return platform in JOINABLE_PLATFORMS


def display_name(platform: str | None) -> str:
    """The name people know the platform by ("Google Meet"); a neutral phrase for anything else."""
    info = _BY_KEY.get(platform)  # type: ignore[call-overload]
    return info.display_name if info else UNKNOWN_PLATFORM_NAME


def joinable_names() -> str:
    """The joinable platforms for messages: "Google Meet", or "Google Meet or Zoom"."""
    names = [info.display_name for info in PLATFORMS if info.joinable]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


def not_joinable_names() -> dict[str, str]:
    """Recognised platforms that cannot be joined yet, by key: what to decline with a reason."""
    return {str(info.platform): info.display_name for info in PLATFORMS if not info.joinable}
