"""Mutated corpus invites through the whole pure pipeline: only the expected refusals escape.

The pipeline is what ingestion runs: parse, build the reply, apply to the stored state,
expand and plan.

Ingestion treats InvalidMessage/InvalidCalendar as "unreadable, no reply" and
planning treats UnplannableEvent as "leave as planned"; anything else would fail the
job on every retry, or stop the reconciler for every PAL.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

from app.domain.calendar_state import apply_message
from app.domain.invites import InvalidCalendar, parse_calendar
from app.domain.join_planning import plan_joins
from app.domain.mime import InvalidMessage, extract_itip, read_headers
from app.domain.occurrences import UnplannableEvent, expand_occurrences
from app.domain.replies import build_reply, reply_address
from tests.unit.ical_helpers import CORPUS, needs_corpus

NOW = datetime(2026, 11, 24, 12, tzinfo=timezone.utc)
MUTATIONS = 600
# Fragments that tend to break calendar parsers: separators, folding, NULs, odd rules.
SPLICES = [b"\x00", b"\r\n", b"\r\n ", b";", b":", b"=", b"TZID=", b"RRULE:FREQ=SECONDLY;INTERVAL=0",
           b"RECURRENCE-ID;RANGE=THISANDFUTURE:", b"99991231T235959Z", b"00000000T000000", b"\xff\xfe",
           b"BEGIN:VEVENT\r\n", b"END:VEVENT\r\n", b"COUNT=0", b"UNTIL=19700101", b"BYSETPOS=0",
           b"EXDATE:", b"RDATE;VALUE=PERIOD:", b"DURATION:P", b"DTEND;VALUE=DATE:", b"SEQUENCE:"]


def mutate(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 6)):
        at = rng.randrange(len(out)) if out else 0
        roll = rng.random()
        if roll < 0.3:
            out[at:at] = rng.choice(SPLICES)
        elif roll < 0.5:
            del out[at:at + rng.randint(1, 40)]
        elif roll < 0.7 and out:
            out[at] = rng.randrange(256)
        elif out:
            start = rng.randrange(len(out))
            out[at:at] = out[start:start + rng.randint(1, 200)]
    return bytes(out)


def through_pipeline(calendar_data: bytes | str) -> None:
    for invite in parse_calendar(calendar_data):
        if reply_address(invite) is not None:  # the service sends no reply without one
            build_reply(invite=invite, pal_address="anna@tavusinvite.com", pal_name="Anna", partstat="ACCEPTED",
                        now=NOW, in_reply_to="<id@example.com>")
        result = apply_message(None, method=invite.method or "REQUEST", calendar=invite.calendar, uid=invite.uid,
                               organizer=invite.organizer or "alex@acme.com", pal_address="anna@tavusinvite.com")
        if result.event is not None:
            occurrences = expand_occurrences(result.event, NOW - timedelta(days=1), NOW + timedelta(days=14))
            plan_joins(occurrences, now=NOW, lead=timedelta(seconds=60))


@needs_corpus
@pytest.mark.parametrize("seed", [1, 2])
def test_mutated_invites_fail_only_in_the_expected_ways(seed: int) -> None:
    rng = random.Random(seed)
    messages = [path.read_bytes() for path in sorted(CORPUS.iterdir()) if path.is_file()]
    calendars = [part.data for part in map(extract_itip, messages) if part is not None]
    refused = 0
    for _ in range(MUTATIONS):
        try:
            if rng.random() < 0.8:  # mostly the calendar, sometimes the whole message
                through_pipeline(mutate(rng.choice(calendars), rng))
            else:
                raw = mutate(rng.choice(messages), rng)
                read_headers(raw)
                part = extract_itip(raw)
                if part is not None:
                    through_pipeline(part.data)
        except (InvalidMessage, InvalidCalendar, UnplannableEvent):
            refused += 1
    assert 0 < refused < MUTATIONS  # the mutations both break and spare invites
