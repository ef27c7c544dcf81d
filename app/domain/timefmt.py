"""Timestamps as the APIs show them: UTC, second precision, trailing Z."""

from __future__ import annotations

from datetime import datetime, timezone


def iso_z(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
