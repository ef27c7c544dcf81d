"""Scalars: `DateTime`, an instant as ISO 8601 in UTC with a trailing Z (2026-11-30T09:00:00Z)."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import NewType

import strawberry

from app.domain.timefmt import iso_z


def _serialize(value: object) -> str:
    # The services' views already hold iso_z strings; a datetime is formatted the same way.
    if isinstance(value, datetime):
        return iso_z(value)  # type: ignore[return-value]
    if isinstance(value, str):
        return value
    raise ValueError(f"not an instant: {value!r}")


def _parse(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("DateTime must be an ISO 8601 string.")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("DateTime must be ISO 8601, e.g. 2026-11-30T09:00:00Z.") from None
    if parsed.tzinfo is None:
        raise ValueError("DateTime must carry a time zone (Z or an offset).")
    return parsed.astimezone(timezone.utc)


DateTime = strawberry.scalar(
    NewType("DateTime", str), name="DateTime", serialize=_serialize, parse_value=_parse,
    description="An instant, as ISO 8601 in UTC with a trailing Z: 2026-11-30T09:00:00Z.",
    specified_by_url="https://datatracker.ietf.org/doc/html/rfc3339")
