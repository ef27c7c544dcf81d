"""A conversation's transcript: final captions, chat messages and what the PAL said (media bridge).

The worker appends (app/services/media_relay.py, from the bot's callbacks); REST, GraphQL
and the stream read. Entries are read in insertion order per conversation, with the entry
id as cursor (index on (conversation, id)).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.domain.errors import ValidationFailed
from app.domain.timefmt import iso_z
from app.services import webhook_events
from app.tables import TranscriptEntry

MAX_TEXT = 2000  # characters of one entry, and of a say / chat request
MAX_SPEAKER = 200
KINDS = ("speech", "chat")
PAGE_MAX = 500


def validate_text(value: object, *, field: str = "text") -> str:
    """Text a client wants said or sent: a string of 1..MAX_TEXT characters (after trimming)."""
    if not isinstance(value, str) or not value.strip():
        raise ValidationFailed(f"{field} is required: a non-empty string.", field=field)
    value = value.strip()
    if len(value) > MAX_TEXT:
        raise ValidationFailed(f"{field} is too long (at most {MAX_TEXT} characters).", field=field)
    if "\x00" in value:
        raise ValidationFailed(f"{field} must not contain NUL characters.", field=field)
    return value


def bounded(text: str, limit: int = MAX_TEXT) -> str:
    """What the meeting produced, made storable: NULs removed, trimmed, cut at `limit`."""
    return text.replace("\x00", "").strip()[:limit]


def entry_view(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "kind": row["kind"], "speaker": row["speaker"], "text": row["text"],
            "at": iso_z(row["at"]), "self": row["is_self"]}


async def append(conversation_pk: int, kind: str, speaker: str, text: str, *, at: datetime, now: datetime,
                 is_self: bool = False) -> dict[str, Any] | None:
    """Store one entry; None when there is nothing to store (empty text)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    text = bounded(text)
    if not text:
        return None
    rows = await TranscriptEntry.insert(TranscriptEntry(
        conversation=conversation_pk, kind=kind, speaker=bounded(speaker or "", MAX_SPEAKER), text=text,
        is_self=is_self, at=at, created_at=now)).returning(*TranscriptEntry.all_columns())
    entry = entry_view(rows[0])
    await webhook_events.enqueue_transcript(conversation_pk, entry, now)  # opt-in endpoints only
    return entry


def page_bounds(after: object, first: object) -> tuple[int, int]:
    if after is None:
        after = 0
    if not isinstance(after, int) or isinstance(after, bool) or after < 0:
        raise ValidationFailed("after must be an entry id (0 or more).", field="after")
    if first is None:
        first = PAGE_MAX
    if not isinstance(first, int) or isinstance(first, bool) or not 1 <= first <= PAGE_MAX:
        raise ValidationFailed(f"first must be between 1 and {PAGE_MAX}.", field="first")
    return after, first


async def entries(conversation_pk: int, *, after: int = 0, first: int = PAGE_MAX) -> tuple[list[dict[str, Any]], bool]:
    """Entries with id > `after`, oldest first, at most `first`; and whether more follow."""
    rows = await TranscriptEntry.select(*TranscriptEntry.all_columns()).where(
        (TranscriptEntry.conversation == conversation_pk) & (TranscriptEntry.id > after)
    ).order_by(TranscriptEntry.id).limit(first + 1)
    return [entry_view(r) for r in rows[:first]], len(rows) > first


MAX_NOTES_ENTRIES = 5000  # the notes prompt trims to its budget anyway; this bounds the read


async def all_entries(conversation_pk: int, limit: int = MAX_NOTES_ENTRIES) -> list[dict[str, Any]]:
    """The newest `limit` entries of a conversation, oldest first (the whole meeting, for its notes)."""
    rows = await TranscriptEntry.select(*TranscriptEntry.all_columns()).where(
        TranscriptEntry.conversation == conversation_pk).order_by(TranscriptEntry.id, ascending=False).limit(limit)
    return [entry_view(r) for r in reversed(rows)]
