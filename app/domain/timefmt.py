"""Timestamps as the APIs show them: UTC, second precision, trailing Z."""

from __future__ import annotations

from datetime import datetime, timezone


def iso_z(value: datetime | None) -> str | None:
    if value is None:
        return None
    # isoformat is twice as fast as strftime, and both APIs format every timestamp they show.
    return value.astimezone(timezone.utc).isoformat(timespec="seconds")[:19] + "Z"
