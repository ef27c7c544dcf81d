"""Public identifiers and API keys."""

from __future__ import annotations

import hashlib
import secrets


def new_public_id(prefix: str) -> str:
    """A short random id such as ``p3f9c0a1b2d4e`` (prefix + 11 hex digits)."""
    return prefix + secrets.token_hex(6)[:11]


def new_api_key() -> str:
    return "pal_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """Keys are long random strings, so a plain SHA-256 is enough (no password stretching)."""
    return hashlib.sha256(key.encode()).hexdigest()


MAX_SERIAL_ID = 2**31 - 1  # PostgreSQL SERIAL is int4


def is_serial_id(value: int) -> bool:
    """Whether `value` can be a row id at all; others are simply not found, never a DB error."""
    return 1 <= value <= MAX_SERIAL_ID
