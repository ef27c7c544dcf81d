"""The meeting's notes, per conversation: written by a full-pipeline PAL when it leaves.

Status `none` (nothing to write, or an echo PAL) -> `writing` -> `ready` | `failed`. The notes
of a series' earlier occurrences (same calendar event, earlier start) are the PAL's memory.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from app.domain.meeting_notes import parse_notes
from app.domain.timefmt import iso_z
from app.tables import Conversation, Join

MAX_ERROR_CHARS = 300


def notes_view(conversation: dict[str, Any]) -> dict[str, Any]:
    """What REST and GraphQL show of a conversation's notes."""
    notes = conversation.get("notes")
    if isinstance(notes, str):
        notes = json.loads(notes)
    notes = notes or {}
    return {
        "conversation_id": conversation["conversation_id"],
        "status": conversation.get("notes_status") or "none",
        "summary": notes.get("summary"),
        "decisions": notes.get("decisions", []),
        "action_items": notes.get("action_items", []),
        "text": notes.get("text"),
        "error": conversation.get("notes_error"),
        "created_at": iso_z(conversation["notes_at"]) if conversation.get("notes_at") else None,
    }


async def mark_writing(conversation_pk: int) -> None:
    await Conversation.update({Conversation.notes_status: "writing", Conversation.notes_error: None}).where(
        Conversation.id == conversation_pk)


async def store(conversation_pk: int, text: str, *, now: datetime) -> dict[str, Any]:
    """Parse and store the LLM's notes; returns the stored structure."""
    notes = parse_notes(text)
    await Conversation.update({Conversation.notes_status: "ready", Conversation.notes: notes,
                               Conversation.notes_error: None, Conversation.notes_at: now}).where(
        Conversation.id == conversation_pk)
    return notes


async def failed(conversation_pk: int, reason: str, *, now: datetime) -> None:
    await Conversation.update({Conversation.notes_status: "failed", Conversation.notes_error: reason[:MAX_ERROR_CHARS],
                               Conversation.notes_at: now}).where(Conversation.id == conversation_pk)


async def previous_in_series(join_pk: int, limit: int = 3) -> list[str]:
    """The notes of up to `limit` earlier occurrences of this join's calendar series, oldest first.

    One calendar_events row per (PAL, UID) holds the whole series, so "the series" is every
    join of that row; "earlier" is by the occurrence's start."""
    rows = await Join.raw(
        """
        SELECT c.notes FROM joins cur
        JOIN joins j ON j.calendar_event = cur.calendar_event AND j.start_at < cur.start_at
        JOIN conversations c ON c.id = j.conversation
        WHERE cur.id = {} AND cur.calendar_event IS NOT NULL AND c.notes_status = 'ready'
        ORDER BY j.start_at DESC, j.id DESC LIMIT {}
        """, join_pk, limit)
    texts = []
    for row in reversed(rows):
        notes = json.loads(row["notes"]) if isinstance(row["notes"], str) else row["notes"] or {}
        if notes.get("text"):
            texts.append(str(notes["text"]))
    return texts
