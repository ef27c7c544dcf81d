"""The meeting's notes as stored and shown: parsed from the LLM's text (meeting_prompt.NOTES_INSTRUCTIONS). Pure.

The model is asked for three sections (Summary, Decisions, Action items). What it writes is
untrusted: it is bounded, control characters go, and a reply that ignores the format is kept
whole as the summary rather than lost.
"""

from __future__ import annotations

import re
from typing import Any

NOTES_STATUSES = ("none", "writing", "ready", "failed")  # conversations.notes_status
MAX_NOTES_CHARS = 20_000
MAX_ITEMS = 100
MAX_ITEM_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_HEADING = re.compile(r"^\s*(?:#+\s*)?\**\s*(summary|decisions|action items)\s*\**\s*:?\s*\**\s*$", re.I)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d{1,3}[.)])\s+")
_NONE = {"none", "none.", "n/a", "-"}


def _clean(text: str, limit: int) -> str:
    text = _CONTROL.sub("", text).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _items(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        item = _clean(_BULLET.sub("", line), MAX_ITEM_CHARS)
        if item and item.lower() not in _NONE:
            out.append(item)
    return out[:MAX_ITEMS]


def _action(item: str) -> dict[str, str]:
    owner, sep, task = item.partition(":")
    if sep and owner.strip() and len(owner) <= 80 and task.strip():
        return {"owner": owner.strip(" *"), "task": task.strip()}
    return {"owner": "Unassigned", "task": item}


def parse_notes(text: str) -> dict[str, Any]:
    """{"text", "summary", "decisions": [...], "action_items": [{"owner", "task"}]}."""
    text = _clean(text or "", MAX_NOTES_CHARS)
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        match = _HEADING.match(line)
        if match:
            current = match.group(1).lower()
            sections.setdefault(current, [])
            continue
        head, sep, rest = line.partition(":")
        if sep and head.strip().lower() in ("summary", "decisions", "action items"):
            current = head.strip().lower()
            sections.setdefault(current, [])
            line = rest
        if current is not None and line.strip():
            sections[current].append(line)
    if not sections:
        return {"text": text, "summary": text, "decisions": [], "action_items": []}
    summary = _clean(" ".join(line.strip() for line in sections.get("summary", [])), 4000)
    return {
        "text": text,
        "summary": summary,
        "decisions": _items(sections.get("decisions", [])),
        "action_items": [_action(i) for i in _items(sections.get("action items", []))],
    }
