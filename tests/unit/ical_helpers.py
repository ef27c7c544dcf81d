"""Shared by the calendar-state and occurrence tests: constants and a normalising parser."""

from __future__ import annotations

from datetime import timezone
from pathlib import Path

import icalendar
import pytest

from app.domain.timezones import normalise_calendar

UTC = timezone.utc
CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "invites"
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="shared corpus not present")
PAL = "pal@agents.example"
ORG = "boss@example.com"


def parse(text: str | bytes) -> icalendar.Calendar:
    """Parse as the pipeline does: time zones resolved by normalise_calendar."""
    cal, _ = normalise_calendar(icalendar.Calendar.from_ical(text))
    return cal
