"""plan_joins(), diff_joins(), overlaps() and dedupe_key()."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.domain.join_planning import (
    ExistingJoin,
    PlannedJoin,
    cap_per_day,
    dedupe_key,
    diff_joins,
    no_join_reason,
    overlaps,
    plan_joins,
    unplanned_reasons,
)
from app.domain.join_state import CancelReason
from app.domain.meeting_links import MeetingLink
from app.domain.occurrences import Occurrence

UTC = timezone.utc
MEET = "https://meet.google.com/abc-defg-hij"
MEET2 = "https://meet.google.com/xyz-abcd-xyz"
T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def occ(rid: str, start: datetime, minutes: int = 30, url: str | None = MEET, platform: str = "google_meet") -> Occurrence:
    link = MeetingLink(url, platform) if url else None
    return Occurrence(rid, start, start + timedelta(minutes=minutes), link, "Standup")


def plan(rid: str, start: datetime, *, join_at: datetime | None = None, minutes: int = 30, url: str = MEET) -> PlannedJoin:
    return PlannedJoin(rid, join_at or start - MIN, start, start + timedelta(minutes=minutes), url)


def existing(id: int, p: PlannedJoin, status: str = "scheduled", reason: str | None = None) -> ExistingJoin:
    return ExistingJoin(id, p.recurrence_id, p.join_at, p.meeting_url, p.start, p.end, status, reason)


# --- plan_joins ---------------------------------------------------------------------------


def test_future_occurrence_joins_one_minute_early() -> None:
    (p,) = plan_joins([occ("a", T0)], now=T0 - timedelta(hours=1))
    assert p == PlannedJoin("a", T0 - MIN, T0, T0 + 30 * MIN, MEET)


def test_custom_lead() -> None:
    (p,) = plan_joins([occ("a", T0)], now=T0 - timedelta(hours=1), lead=timedelta(minutes=5))
    assert p.join_at == T0 - 5 * MIN


def test_in_progress_occurrence_joins_now() -> None:
    now = T0 + 10 * MIN
    (p,) = plan_joins([occ("a", T0)], now=now)
    assert p.join_at == now and p.start == T0


def test_inside_lead_window_joins_now() -> None:
    now = T0 - timedelta(seconds=30)
    (p,) = plan_joins([occ("a", T0)], now=now)
    assert p.join_at == now
    (q,) = plan_joins([occ("a", T0)], now=T0 - MIN)  # exactly start - lead
    assert q.join_at == T0 - MIN


def test_ended_occurrences_dropped() -> None:
    assert plan_joins([occ("a", T0)], now=T0 + 30 * MIN) == []  # end == now
    assert plan_joins([occ("a", T0)], now=T0 + timedelta(hours=2)) == []


def test_only_google_meet_is_planned() -> None:
    occs = [
        occ("zoom", T0, url="https://zoom.us/j/1", platform="zoom"),
        occ("teams", T0, url="https://teams.microsoft.com/l/meetup-join/x", platform="teams"),
        occ("none", T0, url=None),
        occ("meet", T0 + timedelta(days=1)),
    ]
    assert [p.recurrence_id for p in plan_joins(occs, now=T0 - timedelta(days=1))] == ["meet"]


def test_plans_sorted_by_join_at() -> None:
    occs = [occ("b", T0 + timedelta(days=1)), occ("a", T0)]
    assert [p.recurrence_id for p in plan_joins(occs, now=T0 - timedelta(days=1))] == ["a", "b"]


# --- diff_joins ---------------------------------------------------------------------------


def test_diff_creates_missing_and_keeps_identical() -> None:
    a, b = plan("a", T0), plan("b", T0 + timedelta(days=1))
    ch = diff_joins([existing(1, a)], [a, b])
    assert ch.create == [b] and [e.id for e in ch.unchanged] == [1]
    assert ch.move == [] and ch.cancel == []


def test_diff_moves_rescheduled_scheduled_join() -> None:
    a = plan("a", T0)
    moved = plan("a", T0 + timedelta(hours=2))
    ch = diff_joins([existing(1, a)], [moved])
    assert [(e.id, p) for e, p in ch.move] == [(1, moved)]
    assert ch.create == [] and ch.cancel == []


def test_diff_moves_on_link_or_end_change() -> None:
    a = plan("a", T0)
    for changed in (plan("a", T0, url=MEET2), plan("a", T0, minutes=60)):
        ch = diff_joins([existing(1, a)], [changed])
        assert [p for _, p in ch.move] == [changed]


def test_diff_due_scheduled_join_not_moved_to_now_on_every_replan() -> None:
    a = plan("a", T0)
    now = T0 + 5 * MIN
    desired = plan_joins([occ("a", T0)], now=now)  # join_at clamped to now
    ch = diff_joins([existing(1, a)], desired, now=now)
    assert [e.id for e in ch.unchanged] == [1] and ch.move == []
    # without `now` the difference is reported as a move
    assert len(diff_joins([existing(1, a)], desired).move) == 1


def test_diff_cancels_joins_for_cancelled_occurrences() -> None:
    a, b = plan("a", T0), plan("b", T0 + timedelta(days=1))
    ch = diff_joins([existing(1, a), existing(2, b)], [a])
    assert [e.id for e in ch.cancel] == [2]


def test_diff_leaves_joins_beyond_window_end() -> None:
    a, far = plan("a", T0), plan("far", T0 + timedelta(days=30))
    ch = diff_joins([existing(1, a), existing(2, far)], [a], window_end=T0 + timedelta(days=7))
    assert ch.cancel == [] and sorted(e.id for e in ch.unchanged) == [1, 2]
    # without a window_end it is cancelled
    assert [e.id for e in diff_joins([existing(2, far)], [a]).cancel] == [2]


def test_diff_active_join_same_target_left_alone() -> None:
    a = plan("a", T0)
    now = T0 + 5 * MIN
    for status in ("dispatching", "joining", "waiting_room", "in_call"):
        desired = plan_joins([occ("a", T0)], now=now)
        ch = diff_joins([existing(1, a, status)], desired)
        assert [e.id for e in ch.unchanged] == [1] and ch.move == [] and ch.create == [] and ch.cancel == []


def test_diff_active_join_stopped_when_occurrence_changes_or_is_cancelled() -> None:
    a = plan("a", T0)
    new_link = plan("a", T0, url=MEET2)
    ch = diff_joins([existing(1, a, "in_call")], [new_link])
    assert [e.id for e in ch.cancel] == [1] and ch.create == [new_link] and ch.move == []
    ch = diff_joins([existing(1, a, "waiting_room")], [])
    assert [e.id for e in ch.cancel] == [1]


def test_diff_active_join_of_overrunning_meeting_not_cancelled() -> None:
    a = plan("a", T0)
    now = a.end + 10 * MIN  # plan_joins no longer lists it: it has "ended"
    ch = diff_joins([existing(1, a, "in_call")], plan_joins([occ("a", T0)], now=now), now=now)
    assert ch.cancel == [] and [e.id for e in ch.unchanged] == [1]
    # a scheduled join that never ran for an ended occurrence was missed, not cancelled
    ch = diff_joins([existing(2, a)], [], now=now)
    assert ch.cancel == [] and [e.id for e in ch.missed] == [2]


def test_diff_a_bot_that_went_blocks_the_same_target_again() -> None:
    a = plan("a", T0)
    for ran in (existing(1, a, "left"), existing(1, a, "failed", reason="not_admitted")):
        ch = diff_joins([ran], [a])
        assert ch.create == [] and ch.cancel == [] and ch.unchanged == []
    moved = plan("a", T0 + timedelta(days=1))
    assert diff_joins([existing(1, a, "failed")], [moved]).create == [moved]
    assert diff_joins([existing(1, a, "cancelled")], []).cancel == []


def test_diff_a_cancelled_or_missed_join_does_not_block_planning_it_again() -> None:
    # Re-invited after a removal, or an EXDATE taken back: the same start, end and link.
    a = plan("a", T0)
    for never_ran in (existing(1, a, "cancelled", reason="removed_from_event"),
                      existing(1, a, "cancelled", reason="occurrence_cancelled"),
                      existing(1, a, "failed", reason="missed")):
        assert diff_joins([never_ran], [a]).create == [a]


def test_diff_duplicate_live_joins_extras_cancelled() -> None:
    a = plan("a", T0)
    ch = diff_joins([existing(1, a), existing(2, a, "in_call")], [a])
    assert [e.id for e in ch.unchanged] == [2] and [e.id for e in ch.cancel] == [1]
    assert ch.reasons == {1: "duplicate"}


def test_diff_cancel_reasons_say_what_happened() -> None:
    a, b = plan("a", T0), plan("b", T0 + timedelta(days=1))
    # A running bot whose occurrence moved, or whose link changed.
    ch = diff_joins([existing(1, a, "in_call")], [plan("a", T0 + 5 * MIN)])
    assert ch.reasons == {1: "rescheduled"}
    ch = diff_joins([existing(1, a, "in_call")], [plan("a", T0, url=MEET2)])
    assert ch.reasons == {1: "link_changed"}
    # An instance that is gone from a live series (CANCEL or EXDATE) is the default.
    ch = diff_joins([existing(1, a), existing(2, b)], [b])
    assert ch.reasons == {1: "occurrence_cancelled"}
    # The caller knows when the whole event went, or the PAL was removed from it.
    for why in (CancelReason.EVENT_CANCELLED, CancelReason.REMOVED_FROM_EVENT):
        ch = diff_joins([existing(1, a), existing(2, b)], [], absent_reason=why)
        assert ch.reasons == {1: why, 2: why}
    # An occurrence that still exists but lost its Meet link.
    unplanned = unplanned_reasons([occ("a", T0, url="https://zoom.us/j/1", platform="zoom")], now=T0 - MIN)
    ch = diff_joins([existing(1, a)], [], unplanned=unplanned)
    assert ch.reasons == {1: "link_changed"}


def test_all_day_occurrences_get_no_join() -> None:
    day = Occurrence("20240304", T0.replace(hour=0), T0.replace(hour=0) + timedelta(days=1),
                     MeetingLink(MEET, "google_meet"), "Offsite", all_day=True)
    assert plan_joins([day], now=T0 - timedelta(days=2)) == []
    assert no_join_reason(accepted=True, all_day=True) == "all_day"
    assert no_join_reason(accepted=True, all_day=False) is None
    assert no_join_reason(accepted=False, all_day=True) is None


# --- helpers ------------------------------------------------------------------------------


def test_overlaps_half_open() -> None:
    assert overlaps(T0, T0 + 30 * MIN, T0 + 29 * MIN, T0 + 60 * MIN)
    assert not overlaps(T0, T0 + 30 * MIN, T0 + 30 * MIN, T0 + 60 * MIN)
    assert overlaps(T0, T0 + 60 * MIN, T0 + 10 * MIN, T0 + 20 * MIN)
    assert not overlaps(T0 + 60 * MIN, T0 + 90 * MIN, T0, T0 + 30 * MIN)


def test_dedupe_key() -> None:
    k = dedupe_key(7, MEET)
    assert k == dedupe_key(7, "HTTPS://Meet.Google.com/ABC-defg-hij/") == dedupe_key("7", MEET + "#x")
    assert k != dedupe_key(8, MEET) and k != dedupe_key(7, MEET2)
    assert dedupe_key(1, "https://zoom.us/j/1?pwd=a") != dedupe_key(1, "https://zoom.us/j/1?pwd=b")


def test_cap_per_day_keeps_the_earliest_of_each_day() -> None:
    minutely = [plan(f"m{i}", T0 + i * MIN, minutes=1) for i in range(700)]
    kept, dropped = cap_per_day(minutely, 6)
    assert [p.recurrence_id for p in kept] == [f"m{i}" for i in range(6)]
    assert len(dropped) == 694 and {d.reason for d in dropped} == {"series_daily_cap"}
    two_days = [plan("a", T0), plan("b", T0 + timedelta(hours=1)), plan("c", T0 + timedelta(days=1))]
    kept, dropped = cap_per_day(two_days, 1)
    assert [p.recurrence_id for p in kept] == ["a", "c"] and [d.recurrence_id for d in dropped] == ["b"]
