"""Helpers for rows as Piccolo returns them."""

from __future__ import annotations

import json
from typing import Any


def json_value(value: Any, default: Any = None) -> Any:
    """Piccolo returns JSONB as text unless asked otherwise; decode it once, here."""
    if value is None:
        return default
    if isinstance(value, (str, bytes)):
        return json.loads(value)
    return value
