"""Helpers for rows as Piccolo returns them."""

from __future__ import annotations

import json
from typing import Any

from asyncpg.exceptions import CharacterNotInRepertoireError, UntranslatableCharacterError

from app.domain.errors import DomainError, ValidationFailed

# PostgreSQL refuses U+0000 in text and jsonb; both APIs let the database be the one check
# for it instead of scanning every string of every request.
NUL_TEXT_ERRORS = (CharacterNotInRepertoireError, UntranslatableCharacterError)


def json_value(value: Any, default: Any = None) -> Any:
    """Piccolo returns JSONB as text unless asked otherwise; decode it once, here."""
    if value is None:
        return default
    if isinstance(value, (str, bytes)):
        return json.loads(value)
    return value


def as_client_error(exc: BaseException | None) -> DomainError | None:
    """A database refusal that the client's input caused, as the 400 it is (else None)."""
    if isinstance(exc, NUL_TEXT_ERRORS):
        return ValidationFailed("Text must not contain the NUL character (U+0000).")
    return None
