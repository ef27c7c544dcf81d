"""READ: the pure caption tracker (workers/meet_bot/captions.py) with a fake clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from workers.meet_bot.captions import CaptionTracker, _map_end, parse_rows
from workers.meet_bot.channels import Caption


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, s: float) -> None:
        self.t += timedelta(seconds=s)


def row(node: str, speaker: str, text: str) -> dict[str, str]:
    return {"node": node, "speaker": speaker, "text": text}


def finals(caps: list[Caption]) -> list[tuple[str, str]]:
    return [(c.speaker, c.text) for c in caps if c.final]


def run(steps: list[tuple[float, list[dict[str, str]]]], *, tail: float = 2.0) -> list[Caption]:
    """Feed snapshots at the given times (s), tick every 250 ms, then let `tail` s pass and flush."""
    clock = Clock()
    tr = CaptionTracker(clock)
    out: list[Caption] = []
    now = 0.0
    for at, rows in steps:
        while now + 0.25 <= at:
            clock.advance(0.25)
            now += 0.25
            out += tr.tick()
        clock.advance(at - now)
        now = at
        out += tr.update(rows)
    for _ in range(int(tail / 0.25)):
        clock.advance(0.25)
        out += tr.tick()
    return out + tr.flush()


def test_growing_line_gives_partials_then_one_final() -> None:
    caps = run([(0.0, [row("n1", "Bob", "Hello")]),
                (0.3, [row("n1", "Bob", "Hello every")]),
                (0.6, [row("n1", "Bob", "Hello everyone, welcome")])])
    assert [(c.text, c.final) for c in caps] == [
        ("Hello", False), ("Hello every", False), ("Hello everyone, welcome", False),
        ("Hello everyone, welcome", True)]
    assert len({c.line_id for c in caps}) == 1
    assert len({c.at for c in caps}) == 1  # the line's start


def test_final_only_after_settle() -> None:
    clock = Clock()
    tr = CaptionTracker(clock, settle=1.0)
    tr.update([row("n1", "Bob", "Hi")])
    clock.advance(0.9)
    assert tr.tick() == []
    clock.advance(0.2)
    assert finals(tr.tick()) == [("Bob", "Hi")]
    assert tr.tick() == [] and tr.flush() == []


def test_you_rows_and_notices_are_dropped() -> None:
    caps = run([(0.0, [row("n1", "You", "I am the PAL"), row("n2", "", "Carol joined"),
                       row("n3", "Bob", "hi")])])
    assert finals(caps) == [("Bob", "hi")]
    assert all(c.speaker == "Bob" for c in caps)


def test_rewrite_of_pending_line_is_one_line() -> None:
    caps = run([(0.0, [row("n1", "Bob", "I'll meat you")]),
                (0.5, [row("n1", "Bob", "I will meet you there")])])
    assert finals(caps) == [("Bob", "I will meet you there")]


def test_growth_after_commit_becomes_next_line_only_with_new_text() -> None:
    caps = run([(0.0, [row("n1", "Bob", "First sentence")]),
                (2.0, [row("n1", "Bob", "First sentence. Second one")]),
                (2.2, [row("n1", "Bob", "First sentence. Second one here")])])
    assert finals(caps) == [("Bob", "First sentence"), ("Bob", "Second one here")]
    assert len({c.line_id for c in caps}) == 2


def test_correction_of_committed_part_does_not_repeat_it() -> None:
    caps = run([(0.0, [row("n1", "Bob", "we shipped it on monday")]),
                (2.0, [row("n1", "Bob", "We shipped it on Monday. Then tests")])])
    assert finals(caps) == [("Bob", "we shipped it on monday"), ("Bob", "Then tests")]


def test_speaker_change_commits_at_once() -> None:
    clock = Clock()
    tr = CaptionTracker(clock)
    tr.update([row("n1", "Bob", "Are you there")])
    clock.advance(0.3)
    caps = tr.update([row("n1", "Bob", "Are you there"), row("n2", "Carol", "Yes")])
    assert [(c.speaker, c.text, c.final) for c in caps] == [
        ("Bob", "Are you there", True), ("Carol", "Yes", False)]


def test_rerendered_node_is_not_repeated() -> None:
    caps = run([(0.0, [row("n1", "Bob", "Hello there")]),
                (1.5, []),  # Meet briefly empties the region
                (1.8, [row("n7", "Bob", "Hello there")]),
                (2.0, [row("n7", "Bob", "Hello there. And more")])])
    assert finals(caps) == [("Bob", "Hello there"), ("Bob", "And more")]


def test_removed_row_still_finalises_once() -> None:
    caps = run([(0.0, [row("n1", "Bob", "Short")]), (0.2, [])])
    assert finals(caps) == [("Bob", "Short")]


def test_same_text_by_another_speaker_is_its_own_line() -> None:
    caps = run([(0.0, [row("n1", "Bob", "Yes")]), (2.0, [row("n1", "Bob", "Yes"), row("n2", "Carol", "Yes")])])
    assert finals(caps) == [("Bob", "Yes"), ("Carol", "Yes")]


def test_sudden_large_shrink_is_a_cut_monologue() -> None:
    long = " ".join(f"word{i}" for i in range(30))  # ~200 characters
    cut = long[-40:] + " and then something new"
    caps = run([(0.0, [row("n1", "Bob", long)]), (0.3, [row("n1", "Bob", cut)])])
    fin = finals(caps)
    assert fin[0] == ("Bob", long)
    assert fin[1] == ("Bob", "and then something new")
    assert len(fin) == 2


def test_every_line_final_exactly_once() -> None:
    caps = run([(0.0, [row("a", "Bob", "one")]), (0.3, [row("a", "Bob", "one two")]),
                (0.5, [row("a", "Bob", "one two"), row("b", "Carol", "three")]),
                (0.7, [row("a", "Bob", "one two"), row("b", "Carol", "three four")]),
                (3.0, [row("b", "Carol", "three four")])])
    ids = [c.line_id for c in caps if c.final]
    assert len(ids) == len(set(ids))
    assert finals(caps) == [("Bob", "one two"), ("Carol", "three four")]
    partial_ids = {c.line_id for c in caps if not c.final}
    assert partial_ids <= set(ids)


def test_map_end_and_parse_rows() -> None:
    assert _map_end("abc", "abcdef") == 3
    assert _map_end("hello world", "Hello world. Next") == 11
    assert _map_end("completely", "unrelated text here") == 0
    assert parse_rows('{"k":"rows","rows":[{"node":"n1","speaker":"A","text":"b"}, 3]}') == [
        {"node": "n1", "speaker": "A", "text": "b"}]
    assert parse_rows("nope") is None and parse_rows('{"k":"pcm"}') is None
