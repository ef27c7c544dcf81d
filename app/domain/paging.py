"""Cursor pagination, defined once for both APIs: opaque cursors, bounded page sizes.

Pure, no I/O. A cursor is the sort key of the last item a client saw, tagged with the
list it belongs to, in URL-safe base64: clients must treat it as opaque (it is not a
stable format). A cursor from another list, or anything that does not decode, is a
400 / BAD_USER_INPUT naming the parameter, never a 500. Services build their keyset
queries from the decoded key (app/services/*.py); REST (`limit`/`cursor`) and GraphQL
(`first`/`after`) pass the same values through.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from app.domain.errors import ValidationFailed

T = TypeVar("T")
U = TypeVar("U")

DEFAULT_PAGE = 50
MAX_PAGE = 200
MAX_CURSOR = 200  # characters: every cursor we make is far shorter


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list: its items, the cursor of the last one, and whether more follow."""

    items: list[T]
    end_cursor: str | None
    has_next_page: bool

    def map(self, fn: Callable[[T], U]) -> "Page[U]":
        return Page([fn(item) for item in self.items], self.end_cursor, self.has_next_page)


def page_size(first: object, *, field: str = "first", default: int = DEFAULT_PAGE, limit: int = MAX_PAGE) -> int:
    """`first` (or REST's `limit`) as an int in 1..limit; None means `default`."""
    if first is None:
        return default
    if not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= limit:
        raise ValidationFailed(f"{field} must be between 1 and {limit}.", field=field)
    return first


def encode_cursor(kind: str, *key: int | str | datetime) -> str:
    parts = [v.astimezone(timezone.utc).isoformat() if isinstance(v, datetime) else v for v in key]
    raw = json.dumps([kind, *parts], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: object, kind: str, shape: tuple[type, ...], *, field: str = "after") -> tuple[Any, ...] | None:
    """The key of a cursor made by encode_cursor(kind, ...) with values of types `shape`; None for None.

    A datetime in `shape` is read back from its ISO form."""
    if cursor is None:
        return None
    problem = ValidationFailed(f"{field} is not a cursor of this list; pass an endCursor / next_cursor "
                               "this list returned.", field=field)
    if not isinstance(cursor, str) or not cursor or len(cursor) > MAX_CURSOR:
        raise problem
    try:
        decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        raise problem from None
    if not isinstance(decoded, list) or len(decoded) != len(shape) + 1 or decoded[0] != kind:
        raise problem
    key: list[Any] = []
    for value, wanted in zip(decoded[1:], shape):
        if wanted is datetime:
            try:
                value = datetime.fromisoformat(value) if isinstance(value, str) else None
            except ValueError:
                value = None
            if value is None or value.tzinfo is None:
                raise problem
        elif wanted is int:
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
                raise problem
        elif not isinstance(value, wanted):
            raise problem
        key.append(value)
    return tuple(key)


def page_of(rows: list[T], first: int, cursor_of: Callable[[T], str]) -> Page[T]:
    """A page from up to first + 1 rows read in order (the extra row only says more follow)."""
    items = rows[:first]
    return Page(items=items, end_cursor=cursor_of(items[-1]) if items else None, has_next_page=len(rows) > first)
