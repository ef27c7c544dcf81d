"""Parsing the LLM's meeting notes into summary, decisions and owned action items."""

from app.domain.meeting_notes import MAX_NOTES_CHARS, parse_notes

NOTES = """Summary:
The team reviewed the Q3 budget and the launch date.

Decisions:
- Launch moves to 12 March.
- None

Action items:
- Bob: send the revised budget (Friday)
- Carol: book the venue
- check the contract
"""


def test_sections() -> None:
    notes = parse_notes(NOTES)
    assert notes["summary"] == "The team reviewed the Q3 budget and the launch date."
    assert notes["decisions"] == ["Launch moves to 12 March."]
    assert notes["action_items"] == [
        {"owner": "Bob", "task": "send the revised budget (Friday)"},
        {"owner": "Carol", "task": "book the venue"},
        {"owner": "Unassigned", "task": "check the contract"},
    ]
    assert notes["text"].startswith("Summary:")


def test_markdown_headings_and_inline_summary() -> None:
    notes = parse_notes("## Summary\nShort call.\n**Decisions:**\n1. Ship it\n### Action items\n- None")
    assert notes["summary"] == "Short call."
    assert notes["decisions"] == ["Ship it"]
    assert notes["action_items"] == []
    assert parse_notes("Summary: all good\nDecisions:\n- None")["summary"] == "all good"


def test_free_text_is_kept_as_summary_and_bounded() -> None:
    notes = parse_notes("We talked.\x00\x07 Nothing else.")
    assert notes["summary"] == "We talked. Nothing else." and notes["decisions"] == []
    huge = parse_notes("x" * (MAX_NOTES_CHARS * 3))
    assert len(huge["text"]) <= MAX_NOTES_CHARS
