"""Join scheduling against real PostgreSQL and Redis, with an injected clock."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from app.config import reset_settings
from app.keys import ARQ_QUEUE, join_job_id
from app.services import pals as pal_service
from app.services.accounts import create_account
from app.services.inbound import store_message
from app.services.invites import process_inbound
from app.services.joins import reconcile
from app.services.meetings import meetings_for_pal
from app.tables import CalendarEvent, Join, PalEvent
from tests.invite_factory import calendar, invite_email, vevent

PAL = "acme-anna@tavusinvite.com"
ORG = "alex@acme.com"
MEET = "https://meet.google.com/abc-defg-hij"
# The services get NOW as their clock, but arq scores and expires jobs by the wall
# clock, so NOW is relative to the real now: a day ahead, on a whole minute, so every
# time these tests plan (NOW - 3 h at the earliest) is still ahead of the wall clock
# however long the suite runs, on any date.
NOW = (datetime.now(timezone.utc) + timedelta(days=1)).replace(second=0, microsecond=0)
QUEUE = ARQ_QUEUE


@pytest.fixture
async def pal(clean_db, redis_queue, monkeypatch):
    monkeypatch.setenv("PLANNING_HORIZON_DAYS", "30")
    reset_settings()
    account, _ = await create_account("acme")
    yield await pal_service.create_pal(account.id, {
        "pal_name": "Anna", "default_face_id": "r90bbd427f71",
        "layers": {"conferencing": {"username": "acme-anna", "allowlist": [".*@acme\\.com"]}},
    })
    monkeypatch.delenv("PLANNING_HORIZON_DAYS")
    reset_settings()


async def deliver(method: str, *events: str, now: datetime = NOW) -> dict:
    message = invite_email(calendar(method, *events), organizer=ORG, to=PAL, method=method)
    pk = await store_message(message.as_bytes(), envelope_from=ORG, recipients=[PAL], source="smtp", now=now)
    return await process_inbound(pk, now=now)


def event(uid="evt-1@google.com", start=NOW + timedelta(hours=2), duration=timedelta(minutes=30), **kw) -> str:
    kw.setdefault("dtstamp", NOW)
    return vevent(uid=uid, start=start, end=start + duration, organizer=ORG, attendees=[PAL], **kw)


async def live_joins() -> list[dict]:
    return await Join.select().where(Join.status != "cancelled").order_by(Join.start_at)


async def queued_at(redis_queue, row) -> datetime | None:
    score = await redis_queue.zscore(QUEUE, join_job_id(row["id"], row["plan_version"]))
    return None if score is None else datetime.fromtimestamp(score / 1000, timezone.utc)


async def join_jobs(redis_queue) -> list[str]:
    members = await redis_queue.zrange(QUEUE, 0, -1)
    return sorted(m.decode() for m in members if m.startswith(b"join:"))


async def test_future_meeting_joins_one_minute_before(pal, redis_queue):
    await deliver("REQUEST", event(start=NOW + timedelta(minutes=10)))
    [join] = await live_joins()
    assert join["join_at"] == NOW + timedelta(minutes=9)
    assert join["status"] == "scheduled"
    assert await queued_at(redis_queue, join) == NOW + timedelta(minutes=9)


async def test_far_future_meeting_is_queued_by_the_reconciler_when_due(pal, redis_queue):
    await deliver("REQUEST", event(start=NOW + timedelta(days=3)))
    [join] = await live_joins()
    assert await queued_at(redis_queue, join) is None  # Redis carries only what is due soon
    await reconcile(NOW + timedelta(days=3) - timedelta(minutes=10))
    assert await queued_at(redis_queue, join) == join["join_at"]


async def test_meeting_in_progress_is_joined_at_once(pal, redis_queue):
    await deliver("REQUEST", event(start=NOW - timedelta(minutes=20), duration=timedelta(hours=1)))
    [join] = await live_joins()
    assert join["join_at"] == NOW
    assert await queued_at(redis_queue, join) == NOW


async def test_ended_meeting_is_never_joined(pal, redis_queue):
    await deliver("REQUEST", event(start=NOW - timedelta(hours=2), duration=timedelta(hours=1)))
    assert await live_joins() == []


async def test_weekly_series_with_one_moved_and_one_cancelled(pal, redis_queue):
    first = NOW + timedelta(days=1)
    series = event(start=first, rrule="FREQ=WEEKLY;COUNT=4")
    await deliver("REQUEST", series)
    assert [j["start_at"] for j in await live_joins()] == [first + timedelta(weeks=w) for w in range(4)]
    moved = event(start=first + timedelta(weeks=1, hours=3), recurrence_id=first + timedelta(weeks=1), sequence=1,
                  dtstamp=NOW + timedelta(minutes=1))
    result = await deliver("REQUEST", series, moved, now=NOW + timedelta(minutes=1))
    assert result["outcomes"][0]["outcome"] == "updated", result
    cancel = event(start=first + timedelta(weeks=2), recurrence_id=first + timedelta(weeks=2), sequence=1,
                   status="CANCELLED", dtstamp=NOW + timedelta(minutes=2))
    await deliver("CANCEL", cancel, now=NOW + timedelta(minutes=2))
    starts = [j["start_at"] for j in await live_joins()]
    assert starts == [first, first + timedelta(weeks=1, hours=3), first + timedelta(weeks=3)]
    cancelled = await Join.select().where(Join.status == "cancelled")
    assert [j["start_at"] for j in cancelled] == [first + timedelta(weeks=2)]


async def test_cancelling_the_series_cancels_every_remaining_occurrence(pal, redis_queue):
    first = NOW + timedelta(days=1)
    await deliver("REQUEST", event(start=first, rrule="FREQ=DAILY;COUNT=5"))
    assert len(await live_joins()) == 5
    await deliver("CANCEL", event(start=first, rrule="FREQ=DAILY;COUNT=5", sequence=1, status="CANCELLED",
                                  dtstamp=NOW + timedelta(minutes=1)), now=NOW + timedelta(minutes=1))
    assert await live_joins() == []
    assert await Join.count().where(Join.status == "cancelled") == 5


async def test_reschedule_after_the_job_was_queued(pal, redis_queue):
    from workers.joins import run_join
    from workers.meet_bot.slots import BotSlots

    await deliver("REQUEST", event(start=NOW + timedelta(minutes=5)))
    [old] = await live_joins()
    assert await queued_at(redis_queue, old) == NOW + timedelta(minutes=4)
    new_start = NOW + timedelta(minutes=12)
    await deliver("REQUEST", event(start=new_start, sequence=1, dtstamp=NOW + timedelta(minutes=1)),
                  now=NOW + timedelta(minutes=1))
    [moved] = await live_joins()
    assert moved["id"] == old["id"] and moved["plan_version"] == old["plan_version"] + 1
    assert moved["join_at"] == new_start - timedelta(minutes=1)
    assert await queued_at(redis_queue, moved) == new_start - timedelta(minutes=1)
    # The job already in the queue fires at the old time and finds itself stale.
    ctx = {"clock": lambda: NOW + timedelta(minutes=4), "bot_slots": BotSlots(1)}
    assert await run_join(ctx, old["id"], old["plan_version"]) == "stale"
    assert (await Join.select().where(Join.id == old["id"]).first())["status"] == "scheduled"


async def test_meeting_moved_from_the_past_into_the_future(pal, redis_queue):
    await deliver("REQUEST", event(start=NOW - timedelta(hours=3)))
    assert await live_joins() == []
    await deliver("REQUEST", event(start=NOW + timedelta(hours=1), sequence=1, dtstamp=NOW + timedelta(minutes=1)),
                  now=NOW + timedelta(minutes=1))
    [join] = await live_joins()
    assert join["start_at"] == NOW + timedelta(hours=1)


async def test_link_change_moves_the_join_to_the_new_url(pal, redis_queue):
    await deliver("REQUEST", event())
    [before] = await live_joins()
    await deliver("REQUEST", event(link="https://meet.google.com/xyz-abcd-efg", sequence=1,
                                   dtstamp=NOW + timedelta(minutes=1)), now=NOW + timedelta(minutes=1))
    [after] = await live_joins()
    assert after["meeting_url"] == "https://meet.google.com/xyz-abcd-efg"
    assert after["plan_version"] == before["plan_version"] + 1


async def test_title_only_change_leaves_the_join_alone(pal, redis_queue):
    await deliver("REQUEST", event(start=NOW + timedelta(minutes=10)))
    [before] = await live_joins()
    await deliver("REQUEST", event(start=NOW + timedelta(minutes=10), summary="New title",
                                   description="Agenda changed " + MEET, dtstamp=NOW + timedelta(minutes=1)),
                  now=NOW + timedelta(minutes=1))
    [after] = await live_joins()
    assert (after["id"], after["plan_version"], after["join_at"]) == (before["id"], before["plan_version"], before["join_at"])
    assert await join_jobs(redis_queue) == [join_job_id(before["id"], before["plan_version"])]


async def test_pal_removed_from_the_guests(pal, redis_queue):
    await deliver("REQUEST", event())
    # Google sends the removed guest a CANCEL addressed to it alone.
    await deliver("CANCEL", event(sequence=1, status="CANCELLED", dtstamp=NOW + timedelta(minutes=1)),
                  now=NOW + timedelta(minutes=1))
    assert await live_joins() == []


async def test_stale_and_replayed_messages_change_nothing(pal, redis_queue):
    await deliver("REQUEST", event(sequence=2, dtstamp=NOW))
    [before] = await live_joins()
    replay = await deliver("REQUEST", event(sequence=2, dtstamp=NOW))
    older = await deliver("REQUEST", event(start=NOW + timedelta(hours=5), sequence=1, dtstamp=NOW + timedelta(minutes=5)))
    assert replay["outcomes"][0]["outcome"] == "stale"
    assert older["outcomes"][0]["outcome"] == "stale"
    [after] = await live_joins()
    assert after == before


async def test_redis_flushed_then_reconciler_restores_the_queue_once(pal, redis_queue):
    await deliver("REQUEST", event(start=NOW + timedelta(minutes=8), duration=timedelta(minutes=1)))
    await deliver("REQUEST", event(uid="evt-2@google.com", start=NOW + timedelta(minutes=9),
                                   link="https://meet.google.com/qqq-wwww-eee"))
    await redis_queue.flushdb()
    result = await reconcile(NOW)
    assert result["jobs_enqueued"] == 2
    joins = await live_joins()
    assert [await queued_at(redis_queue, j) for j in joins] == [j["join_at"] for j in joins]
    again = await reconcile(NOW)
    assert again["jobs_enqueued"] == 0 and len(await join_jobs(redis_queue)) == 2


async def test_two_events_for_the_same_meet_at_the_same_time_give_one_join(pal, redis_queue):
    await deliver("REQUEST", event(uid="a@google.com"))
    await deliver("REQUEST", event(uid="b@google.com", start=NOW + timedelta(hours=2, minutes=10)))
    assert len(await live_joins()) == 1


DST_EVENT = """BEGIN:VEVENT
DTSTART;TZID={tz}:{start}
DTEND;TZID={tz}:{end}
RRULE:FREQ=WEEKLY;COUNT=3
DTSTAMP:20261001T000000Z
ORGANIZER:mailto:alex@acme.com
UID:dst-{tag}@google.com
ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:acme-anna@tavusinvite.com
X-GOOGLE-CONFERENCE:https://meet.google.com/dst-{tag}{tag}-abc
SEQUENCE:0
SUMMARY:DST week
END:VEVENT"""


@pytest.mark.parametrize(
    "tz, start, expected_utc_hours",
    [
        # US DST ends 1 Nov 2026: 09:00 EDT = 13:00Z, then 09:00 EST = 14:00Z.
        ("America/New_York", "20261026T090000", [13, 14, 14]),
        # EU DST ends 25 Oct 2026: 09:00 CEST = 07:00Z, then 09:00 CET = 08:00Z.
        ("Europe/Berlin", "20261019T090000", [7, 8, 8]),
    ],
)
async def test_dst_week_keeps_local_time(pal, redis_queue, tz, start, expected_utc_hours):
    now = datetime(2026, 10, 15, tzinfo=timezone.utc)
    tag = "ny" if "York" in tz else "be"
    end = start[:9] + "100000"
    await deliver("REQUEST", DST_EVENT.format(tz=tz, start=start, end=end, tag=tag).replace("\n", "\r\n"), now=now)
    joins = await live_joins()
    assert [j["start_at"].hour for j in joins] == expected_utc_hours
    assert [j["start_at"].weekday() for j in joins] == [0, 0, 0]


async def test_busy_worker_hands_the_join_back_without_claiming_it(pal, redis_queue):
    from arq import Retry

    from workers.joins import run_join
    from workers.meet_bot.slots import BotSlots

    await deliver("REQUEST", event(start=NOW + timedelta(minutes=5)))
    [join] = await live_joins()
    slots = BotSlots(1)
    await slots.acquire()  # the only bot slot is taken by another meeting
    with pytest.raises(Retry):
        await run_join({"clock": lambda: NOW + timedelta(minutes=4), "bot_slots": slots}, join["id"], join["plan_version"])
    assert (await Join.select().where(Join.id == join["id"]).first())["status"] == "scheduled"


async def test_instance_cancel_without_a_link_cancels_only_that_instance(pal, redis_queue):
    first = NOW + timedelta(days=1)
    await deliver("REQUEST", event(start=first, rrule="FREQ=DAILY;COUNT=3"))
    # Thunderbird and Outlook send an instance CANCEL with no conference data at all.
    cancel = event(start=first + timedelta(days=1), recurrence_id=first + timedelta(days=1), sequence=1,
                   status="CANCELLED", link=None, dtstamp=NOW + timedelta(minutes=1))
    await deliver("CANCEL", cancel, now=NOW + timedelta(minutes=1))
    assert [j["start_at"] for j in await live_joins()] == [first, first + timedelta(days=2)]
    # An override-only REQUEST without a link keeps the series accepted too.
    moved = event(start=first + timedelta(days=2, hours=1), recurrence_id=first + timedelta(days=2), sequence=1,
                  link=None, description="Join: " + MEET, dtstamp=NOW + timedelta(minutes=2))
    await deliver("REQUEST", moved, now=NOW + timedelta(minutes=2))
    assert [j["start_at"] for j in await live_joins()] == [first, first + timedelta(days=2, hours=1)]


async def test_an_unexpandable_event_does_not_stop_planning_for_others(pal, redis_queue, caplog):
    await deliver("REQUEST", event(uid="bad@google.com", start=NOW + timedelta(hours=3)))
    await deliver("REQUEST", event(uid="good@google.com"))
    # Data that got past parsing but trips the expander (here: no DTSTART at all).
    broken = ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:x\r\nBEGIN:VEVENT\r\nUID:bad@google.com\r\n"
              "DTSTAMP:20261101T000000Z\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n")
    await CalendarEvent.update({CalendarEvent.ics: broken, CalendarEvent.planned_until: NOW - timedelta(days=1)}).where(
        CalendarEvent.uid == "bad@google.com")
    await CalendarEvent.update({CalendarEvent.planned_until: None}).where(CalendarEvent.uid == "good@google.com")
    await Join.delete().where(Join.start_at == NOW + timedelta(hours=2))  # the good event's join, to be re-made
    before_bad = [j["id"] for j in await live_joins()]

    result = await reconcile(NOW)

    assert result["events_replanned"] == 2
    joins = await live_joins()
    assert [j["start_at"] for j in joins] == [NOW + timedelta(hours=2), NOW + timedelta(hours=3)]
    assert before_bad[0] in [j["id"] for j in joins]  # the bad event keeps the join it had
    assert any("bad@google.com: cannot expand" in r.getMessage() for r in caplog.records)
    bad = await CalendarEvent.select().where(CalendarEvent.uid == "bad@google.com").first()
    assert bad["planned_until"] > NOW  # retried when the horizon next moves, not every minute
    # The owner's listing still shows both events; the bad one just has no occurrences.
    listed = {m["uid"]: m["occurrences"] for m in await meetings_for_pal(bad["pal"], NOW)}
    assert listed["bad@google.com"] == [] and len(listed["good@google.com"]) == 1


# --- the organizer's side, as sabre/vobject's iTIP Broker sends it -------------------------

COLLEAGUE = "sam@acme.com"


def guest_event(sequence: int, *, attendees=(PAL, COLLEAGUE), dtstamp_min: int = 0, **kw) -> str:
    return vevent(uid="evt-1@google.com", start=NOW + timedelta(hours=2), end=NOW + timedelta(hours=2, minutes=30),
                  organizer=ORG, attendees=list(attendees), sequence=sequence,
                  dtstamp=NOW + timedelta(minutes=dtstamp_min), **kw)


@pytest.mark.parametrize("cancel_status, reason", [("CONFIRMED", "removed_from_event"),
                                                   ("CANCELLED", "event_cancelled")])
async def test_removed_from_the_guests_then_invited_again_is_planned_again(pal, redis_queue, smtp_sink,
                                                                           cancel_status, reason):
    await deliver("REQUEST", guest_event(0))
    [first] = await live_joins()
    # The organizer drops the PAL: a CANCEL addressed to it alone, SEQUENCE 2.
    await deliver("CANCEL", guest_event(2, attendees=[PAL], status=cancel_status, dtstamp_min=1),
                  now=NOW + timedelta(minutes=1))
    assert await live_joins() == []
    cancelled = await Join.select().where(Join.id == first["id"]).first()
    assert (cancelled["status"], cancelled["reason"]) == ("cancelled", reason)
    # ...then invites it again: same time and link, SEQUENCE 3, PARTSTAT NEEDS-ACTION.
    result = await deliver("REQUEST", guest_event(3, dtstamp_min=2), now=NOW + timedelta(minutes=2))
    assert result["outcomes"][0]["decision"] == "accepted", result
    [again] = await live_joins()
    assert again["id"] != first["id"] and again["status"] == "scheduled"
    assert again["start_at"] == first["start_at"] and again["meeting_url"] == first["meeting_url"]
    [listed] = await meetings_for_pal(again["pal"], NOW + timedelta(minutes=2))
    assert listed["decision"] == "accepted" and len(listed["occurrences"]) == 1


async def test_exdate_taken_back_plans_that_day_again(pal, redis_queue):
    first = NOW + timedelta(days=1)
    weekly = dict(start=first, rrule="FREQ=WEEKLY;COUNT=3")
    await deliver("REQUEST", event(**weekly))
    day = first + timedelta(weeks=1)
    await deliver("REQUEST", event(**weekly, exdates=[day], sequence=1, dtstamp=NOW + timedelta(minutes=1)),
                  now=NOW + timedelta(minutes=1))
    assert [j["start_at"] for j in await live_joins()] == [first, first + timedelta(weeks=2)]
    [gone] = await Join.select().where(Join.status == "cancelled")
    assert (gone["start_at"], gone["reason"]) == (day, "occurrence_cancelled")
    # A later REQUEST no longer has the EXDATE: the day is back, and so is its join.
    await deliver("REQUEST", event(**weekly, sequence=3, dtstamp=NOW + timedelta(minutes=2)),
                  now=NOW + timedelta(minutes=2))
    assert [j["start_at"] for j in await live_joins()] == [first + timedelta(weeks=w) for w in range(3)]
    [listed] = await meetings_for_pal(gone["pal"], NOW + timedelta(minutes=2))
    assert day.isoformat().replace("+00:00", "Z") in [o["start_at"] for o in listed["occurrences"]]


async def test_all_day_event_is_accepted_with_no_join(pal, redis_queue, smtp_sink):
    day = (NOW + timedelta(days=2)).date()
    all_day = (f"BEGIN:VEVENT\r\nDTSTART;VALUE=DATE:{day:%Y%m%d}\r\nDTEND;VALUE=DATE:{day + timedelta(days=1):%Y%m%d}\r\n"
               f"DTSTAMP:{NOW:%Y%m%dT%H%M%SZ}\r\nORGANIZER:mailto:{ORG}\r\nUID:offsite@google.com\r\n"
               f"ATTENDEE;PARTSTAT=NEEDS-ACTION:mailto:{PAL}\r\nX-GOOGLE-CONFERENCE:{MEET}\r\n"
               "SEQUENCE:0\r\nSUMMARY:Offsite\r\nEND:VEVENT")
    result = await deliver("REQUEST", all_day)
    assert result["outcomes"][0]["decision"] == "accepted", result
    assert await Join.count() == 0
    [listed] = await meetings_for_pal((await CalendarEvent.select().first())["pal"], NOW)
    assert (listed["decision"], listed["reason"]) == ("accepted", "all_day")


async def test_instance_and_link_cancel_reasons(pal, redis_queue):
    first = NOW + timedelta(days=1)
    await deliver("REQUEST", event(start=first, rrule="FREQ=DAILY;COUNT=2"))
    cancel = event(start=first, recurrence_id=first, sequence=1, status="CANCELLED", link=None,
                   dtstamp=NOW + timedelta(minutes=1))
    await deliver("CANCEL", cancel, now=NOW + timedelta(minutes=1))
    # The series moves to Zoom: the remaining join is unplanned because its link changed.
    await deliver("REQUEST", event(start=first, rrule="FREQ=DAILY;COUNT=2", link="https://zoom.us/j/123",
                                   sequence=2, dtstamp=NOW + timedelta(minutes=2)), now=NOW + timedelta(minutes=2))
    reasons = [j["reason"] for j in await Join.select().where(Join.status == "cancelled").order_by(Join.start_at)]
    assert reasons in (["occurrence_cancelled", "link_changed"], ["occurrence_cancelled", "declined"])


# --- late and missed joins: the wall clock, not a fixed date --------------------------------


async def test_join_whose_meeting_ended_while_no_worker_ran_ends_as_missed(pal, redis_queue):
    wall = datetime.now(timezone.utc)
    then = wall - timedelta(days=2)
    await deliver("REQUEST", event(start=then + timedelta(minutes=10), dtstamp=then), now=then)
    [join] = await live_joins()
    await redis_queue.flushdb()  # and Redis lost its job
    result = await reconcile(wall)
    assert (result["jobs_enqueued"], result["joins_missed"]) == (0, 1)
    row = await Join.select().where(Join.id == join["id"]).first()
    assert (row["status"], row["reason"]) == ("failed", "missed")
    events = await PalEvent.select().where(PalEvent.kind == "failed")
    assert [e["payload"]["reason"] if isinstance(e["payload"], dict) else json.loads(e["payload"])["reason"]
            for e in events] == ["missed"]
    again = await reconcile(wall + timedelta(minutes=1))  # said once, not every tick
    assert again["joins_missed"] == 0 and await PalEvent.count().where(PalEvent.kind == "failed") == 1


async def test_late_join_of_a_running_meeting_is_queued_to_run_now(pal, redis_queue):
    wall = datetime.now(timezone.utc)
    then = wall - timedelta(days=2)
    # A three-day workshop that the fleet (and Redis) missed the start of.
    await deliver("REQUEST", event(start=then + timedelta(minutes=10), duration=timedelta(days=3), dtstamp=then),
                  now=then)
    [join] = await live_joins()
    await redis_queue.flushdb()
    result = await reconcile(wall)
    assert result["jobs_enqueued"] == 1
    score = await queued_at(redis_queue, join)
    assert score is not None and abs((score - datetime.now(timezone.utc)).total_seconds()) < 60
    assert (await Join.select().where(Join.id == join["id"]).first())["status"] == "scheduled"


async def test_a_job_that_fires_after_its_meeting_ended_is_missed_not_joined(pal, redis_queue):
    from workers.joins import run_join
    from workers.meet_bot.slots import BotSlots

    await deliver("REQUEST", event(start=NOW + timedelta(minutes=5)))
    [join] = await live_joins()
    late = {"clock": lambda: NOW + timedelta(hours=1), "bot_slots": BotSlots(1)}  # ended at NOW + 35 min
    assert await run_join(late, join["id"], join["plan_version"]) == "stale"
    row = await Join.select().where(Join.id == join["id"]).first()
    assert (row["status"], row["reason"]) == ("failed", "missed")



# --- bounds: one invitation or tenant cannot take the shared workers ------------------------


async def test_a_minutely_series_is_capped_per_day_and_says_so(pal, redis_queue):
    start = NOW + timedelta(hours=1)
    minutely = event(start=start, duration=timedelta(minutes=1), rrule="FREQ=MINUTELY;COUNT=700")
    result = await deliver("REQUEST", minutely)
    assert result["outcomes"][0]["decision"] == "accepted", result
    joins = await live_joins()
    per_day: dict = {}
    for j in joins:
        per_day[j["start_at"].date()] = per_day.get(j["start_at"].date(), 0) + 1
    assert max(per_day.values()) <= 6 and len(joins) == sum(per_day.values()) < 20
    [listed] = await meetings_for_pal(joins[0]["pal"], NOW)
    assert len(listed["unplanned"]) == 50 and {u["reason"] for u in listed["unplanned"]} == {"series_daily_cap"}
    said = await PalEvent.select().where(PalEvent.kind == "joins_not_planned")
    assert len(said) == 1
    payload = said[0]["payload"] if isinstance(said[0]["payload"], dict) else json.loads(said[0]["payload"])
    assert payload["count"] == 700 - len(joins) and payload["reasons"] == {"series_daily_cap": 700 - len(joins)}
    await reconcile(NOW + timedelta(days=30))  # re-planned later: said again only if it changes
    await deliver("REQUEST", minutely)  # a re-delivery changes nothing
    assert await PalEvent.count().where(PalEvent.kind == "joins_not_planned") <= 2


async def test_one_bot_per_pal_per_time_slot(pal, redis_queue):
    await deliver("REQUEST", event(uid="first@google.com"))
    await deliver("REQUEST", event(uid="second@google.com", start=NOW + timedelta(hours=2, minutes=15),
                                   link="https://meet.google.com/zzz-yyyy-xxx"))
    [join] = await live_joins()
    assert join["meeting_url"] == MEET
    listed = {m["uid"]: m for m in await meetings_for_pal(join["pal"], NOW)}
    assert [u["reason"] for u in listed["second@google.com"]["unplanned"]] == ["overlap"]
    assert listed["first@google.com"]["unplanned"] == []


async def test_planned_joins_per_pal_are_capped(pal, redis_queue, monkeypatch):
    monkeypatch.setenv("MAX_PLANNED_JOINS_PER_PAL", "3")
    reset_settings()
    await deliver("REQUEST", event(start=NOW + timedelta(days=1), rrule="FREQ=DAILY;COUNT=5"))
    assert len(await live_joins()) == 3
    [listed] = await meetings_for_pal((await live_joins())[0]["pal"], NOW)
    assert [u["reason"] for u in listed["unplanned"]] == ["pal_join_cap", "pal_join_cap"]


async def test_bots_running_at_once_are_capped_per_account(pal, redis_queue, monkeypatch):
    from arq import Retry

    from workers.joins import run_join
    from workers.meet_bot.slots import BotSlots

    monkeypatch.setenv("MAX_BOTS_PER_ACCOUNT", "1")
    reset_settings()
    await deliver("REQUEST", event(uid="a@google.com", start=NOW + timedelta(minutes=5)))
    await deliver("REQUEST", event(uid="b@google.com", start=NOW + timedelta(hours=3),
                                   link="https://meet.google.com/zzz-yyyy-xxx"))
    first, second = await live_joins()
    await Join.update({Join.status: "in_call"}).where(Join.id == first["id"])  # a bot of this account runs
    ctx = {"clock": lambda: NOW + timedelta(hours=3), "bot_slots": BotSlots(2)}
    with pytest.raises(Retry):
        await run_join(ctx, second["id"], second["plan_version"])
    assert (await Join.select().where(Join.id == second["id"]).first())["status"] == "scheduled"
