"""Join planning at scale: the reconcile tick, Redis memory per deferred join, and job start precision.

Builds, in a dedicated database, N PALs (one account) each with one accepted daily Google Meet
series (a real stored invitation: VTIMEZONE America/New_York, RRULE:FREQ=DAILY, X-GOOGLE-CONFERENCE)
and its planned joins: N x DAYS scheduled future occurrences plus N x HISTORY_DAYS past joins (status
`left`), exactly what `replan_event` would have stored. Meetings start on :00/:30 local time, spread
evenly over the day (the DST-ambiguous 01:00-02:59 is skipped), so each half hour holds N/44 joins.
The data is bulk-loaded with INSERT ... SELECT generate_series: the point is the steady state, not
the load. The template event itself goes through the real intake (store_message + process_inbound),
and a sample of replans checks that the bulk rows are what the planner would store (0 moves).

PLANNING_HORIZON_DAYS is set to DAYS (10), so "N x DAYS" is both the number of future occurrences and
what the horizon holds. Then it measures, with the real code (`app.services.joins.reconcile`):

  1. replan_event per event, on a sample: an hourly horizon extension (no new occurrence) and a
     day-behind one (creates one join);
  2. the reconcile tick: nothing stale (first with an empty Redis, then with the window already
     queued); the real steady state, where every event's horizon goes stale once an hour, so a
     tick replans N/60 events (1 in 24 of them gains a day); a catch-up tick of REPLANS_PER_TICK
     day-behind events (scaled down and extrapolated if it would take too long);
  3. EXPLAIN ANALYZE of the tick's queries, then the same with two candidate indexes created in
     the bench database only (what-if; no migration is written);
  4. Redis memory per deferred `join:<id>:v1` arq job (INFO used_memory delta and MEMORY USAGE),
     extrapolated to every future occurrence vs the 15-minute window the service keeps;
  5. precision: a real arq Worker in a subprocess (WorkerSettings' max_jobs and poll_delay) runs a
     probe job that records start - defer_until, for probes deferred 2-20 s ahead at distinct
     instants: idle, then while the same worker process runs back-to-back steady-state reconcile
     ticks (as the cron does) and a CPU burner process spins; and a burst of one half-hour slot of
     jobs due at the same instant.

    .venv/bin/python bench/planning_bench.py            # 100,000 PALs / 1,000,000 occurrences (~6-7 min on 2 cores)
    .venv/bin/python bench/planning_bench.py --quick    # 10,000 PALs / 100,000 occurrences (~2 min)
    .venv/bin/python bench/planning_bench.py --keep     # keep the database and Redis db afterwards

Environment: PLAN_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/pal_bench_plan; it
is dropped and re-created), PLAN_BENCH_REDIS_URL (default redis://127.0.0.1:6379/12; flushed). Both
must be loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import statistics
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

DATABASE_URL = os.environ.get("PLAN_BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/pal_bench_plan")
REDIS_URL = os.environ.get("PLAN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
TZ_NAME = "America/New_York"
TZ = ZoneInfo(TZ_NAME)
# Local start times (minutes after midnight): every :00 and :30, except 01:00-02:59, which a DST
# change makes ambiguous or nonexistent (PostgreSQL and zoneinfo could then disagree by an hour).
SLOTS = [m for m in range(0, 24 * 60, 30) if not 60 <= m < 180]
ORGANIZER = "alex@acme.com"
TEMPLATE_CODE = "abc-defg-hij"
TEMPLATE_TAG = "template"  # 8 characters, replaced by the zero-padded event id
PROBE_QUEUE = "arq:queue:bench-probe"
RESULTS_KEY = "bench:probe:results"
TICKS_KEY = "bench:probe:ticks"
LEAD = timedelta(seconds=60)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def bench_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(DATABASE_URL=C.loopback_only(DATABASE_URL), REDIS_URL=C.loopback_only(REDIS_URL),
               PYTHONUNBUFFERED="1")
    return env


def use_env(days: int) -> None:
    """Point this process at the bench database and Redis db (before importing app.*)."""
    os.environ.update(bench_env())
    os.environ["PLANNING_HORIZON_DAYS"] = str(days)
    sys.path.insert(0, str(C.ROOT))
    os.chdir(C.ROOT)


def admin_url() -> str:
    return urlunparse(urlparse(DATABASE_URL)._replace(path="/postgres"))


def db_name() -> str:
    return urlparse(DATABASE_URL).path.lstrip("/")


async def drop_database() -> None:
    import asyncpg

    conn = await asyncpg.connect(admin_url())
    try:
        await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
                           db_name())
        await conn.execute(f'DROP DATABASE IF EXISTS "{db_name()}"')
    finally:
        await conn.close()


def pct(values: list[float], p: float) -> float:
    return C.percentile(values, p)


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "n/a"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms"


# --- the template invitation ------------------------------------------------------------------

def google_invite(uid: str, pal_address: str, start_local: datetime, now: datetime) -> bytes:
    """A Google-Calendar-shaped REQUEST for a daily 30-minute Meet series with a VTIMEZONE."""
    def local(dt: datetime) -> str:
        return dt.strftime("%Y%m%dT%H%M%S")

    stamp = now.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    link = f"https://meet.google.com/{TEMPLATE_CODE}"
    ics = "\r\n".join([
        "BEGIN:VCALENDAR", "PRODID:-//Google Inc//Google Calendar 70.9054//EN", "VERSION:2.0",
        "CALSCALE:GREGORIAN", "METHOD:REQUEST",
        "BEGIN:VTIMEZONE", f"TZID:{TZ_NAME}", f"X-LIC-LOCATION:{TZ_NAME}",
        "BEGIN:DAYLIGHT", "TZOFFSETFROM:-0500", "TZOFFSETTO:-0400", "TZNAME:EDT",
        "DTSTART:19700308T020000", "RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=2SU", "END:DAYLIGHT",
        "BEGIN:STANDARD", "TZOFFSETFROM:-0400", "TZOFFSETTO:-0500", "TZNAME:EST",
        "DTSTART:19701101T020000", "RRULE:FREQ=YEARLY;BYMONTH=11;BYDAY=1SU", "END:STANDARD",
        "END:VTIMEZONE",
        "BEGIN:VEVENT",
        f"DTSTART;TZID={TZ_NAME}:{local(start_local)}",
        f"DTEND;TZID={TZ_NAME}:{local(start_local + timedelta(minutes=30))}",
        "RRULE:FREQ=DAILY",
        f"DTSTAMP:{stamp}",
        f"ORGANIZER;CN=Alex:mailto:{ORGANIZER}",
        f"UID:{uid}",
        f"ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=ACCEPTED;RSVP=TRUE;CN=Alex;X-NUM-GUESTS=0:mailto:{ORGANIZER}",
        f"ATTENDEE;CUTYPE=INDIVIDUAL;ROLE=REQ-PARTICIPANT;PARTSTAT=NEEDS-ACTION;RSVP=TRUE;CN={pal_address};X-NUM-GUESTS=0:mailto:{pal_address}",
        f"X-GOOGLE-CONFERENCE:{link}",
        f"CREATED:{stamp}",
        f"DESCRIPTION:Daily standup.\\n\\nJoin with Google Meet: {link}\\n\\nLearn more about Meet at: https://support.google.com/a/users/answer/9282720",
        f"LAST-MODIFIED:{stamp}",
        "LOCATION:", "SEQUENCE:0", "STATUS:CONFIRMED", "SUMMARY:Daily standup", "TRANSP:OPAQUE",
        "BEGIN:VALARM", "ACTION:DISPLAY", "DESCRIPTION:This is an event reminder", "TRIGGER:-P0DT0H10M0S", "END:VALARM",
        "END:VEVENT", "END:VCALENDAR", "",
    ])
    msg = EmailMessage()
    msg["From"] = f"Alex <{ORGANIZER}>"
    msg["Sender"] = "Google Calendar <calendar-notification@google.com>"
    msg["To"] = pal_address
    msg["Subject"] = "Invitation: Daily standup"
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = make_msgid(domain="google.com")
    msg.set_content("You have been invited to the following event.")
    msg.add_alternative("<p>You have been invited to the following event.</p>", subtype="html")
    msg.add_alternative(ics.encode(), maintype="text", subtype="calendar", params={"method": "REQUEST"})
    msg.make_mixed()
    msg.add_attachment(ics.encode(), maintype="application", subtype="ics", filename="invite.ics")
    return msg.as_bytes()


def choose_now(real_now: datetime) -> datetime:
    """The bench's "now": 11 minutes before the next slot that starts >= 12 minutes from now, so the
    15-minute enqueue window holds exactly one half-hour slot of joins (join_at = start - 60 s)."""
    day = real_now.astimezone(TZ).date()
    for offset in range(0, 3):
        for minutes in SLOTS:
            d = day + timedelta(days=offset)
            start = datetime(d.year, d.month, d.day, minutes // 60, minutes % 60, tzinfo=TZ).astimezone(timezone.utc)
            if start >= real_now + timedelta(minutes=12):
                return start - LEAD - timedelta(minutes=10)
    raise AssertionError("no slot found")


# --- setup --------------------------------------------------------------------------------------

async def capture_template(now: datetime) -> dict[str, Any]:
    """One real invitation through the real intake; its stored row becomes the bulk template."""
    from app.services import pals as pal_service
    from app.services.accounts import create_account
    from app.services.inbound import store_message
    from app.services.invites import process_inbound
    from app.tables import CalendarEvent, Join, Pal

    account, _ = await create_account("planning-bench")
    username = f"bench-{TEMPLATE_TAG}"
    await pal_service.create_pal(account.id, {
        "pal_name": "Bench template", "default_face_id": "r90bbd427f71",
        "layers": {"conferencing": {"username": username, "allowlist": [".*@acme\\.com"]}},
    })
    address = f"{username}@tavusinvite.com"
    start_local = (now.astimezone(TZ) - timedelta(days=30)).replace(hour=9, minute=0, second=0, microsecond=0)
    raw = google_invite(f"bench-{TEMPLATE_TAG}@google.com", address, start_local, now)
    pk = await store_message(raw, envelope_from=ORGANIZER, recipients=[address], source="smtp", now=now)
    result = await process_inbound(pk, now=now)
    event = await CalendarEvent.select().where(CalendarEvent.uid == f"bench-{TEMPLATE_TAG}@google.com").first()
    if event is None or event["decision"] != "accepted":
        raise SystemExit(f"template invite was not accepted: {result}")
    joins = await Join.count().where(Join.calendar_event == event["id"])
    pal_row = await Pal.select().where(Pal.username == username).first()
    ics = re.sub(r"\r?\n[ \t]", "", event["ics"])  # unfold: tokens must not straddle a fold
    start_value, end_value = start_local.strftime("%Y%m%dT%H%M%S"), (start_local + timedelta(minutes=30)).strftime("%Y%m%dT%H%M%S")
    for token in (TEMPLATE_TAG, TEMPLATE_CODE, start_value, end_value):
        if token not in ics:
            raise SystemExit(f"stored template ics lacks {token!r}:\n{ics}")
    if f"DTSTART;TZID={TZ_NAME}:{start_value}" not in ics:
        raise SystemExit(f"stored template keeps DTSTART in another form:\n{ics}")
    ics = (ics.replace(TEMPLATE_TAG, "@@TAG@@").replace(TEMPLATE_CODE, "@@CODE@@")
           .replace(f"{TZ_NAME}:{start_value}", f"{TZ_NAME}:@@START@@").replace(f"{TZ_NAME}:{end_value}", f"{TZ_NAME}:@@END@@"))
    return {"account": account.id, "pal": pal_row, "event": event, "ics": ics, "template_joins": joins}


async def bulk_load(conn, tpl: dict[str, Any], n: int, days: int, history: int, now: datetime) -> dict[str, float]:
    """PALs, events and joins by INSERT ... SELECT; returns seconds per step."""
    timings: dict[str, float] = {}
    ev, pal = tpl["event"], tpl["pal"]
    # Forget the template event (its PAL and account stay): the bulk rows replace it.
    await conn.execute("DELETE FROM calendar_events")
    await conn.execute("DELETE FROM pal_events")
    t = time.perf_counter()
    await conn.execute("""
        INSERT INTO pals (pal_id, account, pal_name, system_prompt, pipeline_mode, default_face_id, layers,
                          username, email_domain, allowlist, created_at, updated_at)
        SELECT 'bp' || lpad(g::text, 8, '0'), $1, 'Bench ' || g, $2, $3, $4,
               jsonb_set($5::jsonb, '{conferencing,username}', to_jsonb('bench-' || lpad(g::text, 8, '0'))),
               'bench-' || lpad(g::text, 8, '0'), $6, $7::jsonb, $8, $8
        FROM generate_series(1, $9) g
    """, tpl["account"], pal["system_prompt"], pal["pipeline_mode"], pal["default_face_id"],
        json.dumps(pal["layers"]) if not isinstance(pal["layers"], str) else pal["layers"],
        pal["email_domain"], json.dumps(pal["allowlist"]) if not isinstance(pal["allowlist"], str) else pal["allowlist"],
        now, n)
    timings["pals"] = time.perf_counter() - t
    # One daily series per bench PAL. Slot = id % len(SLOTS); DTSTART 30 days ago at the slot's local time.
    t = time.perf_counter()
    await conn.execute("""
        WITH p AS (
            SELECT id, lpad(substr(pal_id, 3), 8, '0') AS tag,
                   ($1::int[])[(id % array_length($1::int[], 1)) + 1] AS slot,
                   translate(lpad(id::text, 10, '0'), '0123456789', 'qrstuvwxyz') AS letters
            FROM pals WHERE pal_id LIKE 'bp%'
        )
        INSERT INTO calendar_events (pal, uid, organizer, sequence, dtstamp, ics, cancelled, cancelled_instances,
            summary, description, meeting_url, platform, decision, reason, authenticated, from_addr, sender_addr,
            timezone_problems, planned_until, created_at, updated_at)
        SELECT p.id, 'bench-' || p.tag || '@google.com', $2, 0, $3,
               replace(replace(replace(replace($4::text, '@@TAG@@', p.tag),
                   '@@CODE@@', substr(p.letters, 1, 3) || '-' || substr(p.letters, 4, 4) || '-' || substr(p.letters, 8, 3)),
                   '@@START@@', to_char($5::date + make_interval(mins => p.slot), 'YYYYMMDD"T"HH24MISS')),
                   '@@END@@', to_char($5::date + make_interval(mins => p.slot + 30), 'YYYYMMDD"T"HH24MISS')),
               false, '[]'::jsonb, $6, $7,
               'https://meet.google.com/' || substr(p.letters, 1, 3) || '-' || substr(p.letters, 4, 4) || '-' || substr(p.letters, 8, 3),
               $8, 'accepted', $9, $10, $11, $12, '[]'::jsonb, $13, $14, $14
        FROM p
    """, SLOTS, ev["organizer"], ev["dtstamp"], tpl["ics"], (now.astimezone(TZ) - timedelta(days=30)).date(),
        ev["summary"], ev["description"], ev["platform"], ev["reason"], ev["authenticated"], ev["from_addr"],
        ev["sender_addr"], now + timedelta(days=days), now)
    timings["calendar_events"] = time.perf_counter() - t
    # Joins: `history` past occurrences (left) and `days` future ones (scheduled), per event.
    t = time.perf_counter()
    await conn.execute("""
        WITH e AS (
            SELECT id, pal, meeting_url, make_interval(mins => ($1::int[])[(pal % array_length($1::int[], 1)) + 1]) AS slot,
                   (($2::timestamptz AT TIME ZONE $3)::date) AS d0
            FROM calendar_events
        ), f AS (
            SELECT id, pal, meeting_url, slot,
                   CASE WHEN ((d0 + slot) AT TIME ZONE $3) - $4::interval <= $2 THEN d0 + 1 ELSE d0 END AS d_first
            FROM e
        ), o AS (
            SELECT f.id, f.pal, f.meeting_url, k, ((f.d_first + k) + f.slot) AT TIME ZONE $3 AS s
            FROM f, generate_series(-$5::int, $6::int - 1) k
        )
        INSERT INTO joins (pal, calendar_event, conversation, recurrence_id, meeting_url, start_at, end_at, join_at,
                           status, reason, plan_version, stop_requested, created_at, updated_at)
        SELECT o.pal, o.id, NULL, to_char(o.s AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"'), o.meeting_url,
               o.s, o.s + interval '30 minutes', o.s - $4::interval,
               CASE WHEN o.k < 0 THEN 'left' ELSE 'scheduled' END, CASE WHEN o.k < 0 THEN 'meeting_ended' END,
               1, false, $2, $2
        FROM o ORDER BY o.s, o.id
    """, SLOTS, now, TZ_NAME, LEAD, history, days)
    timings["joins"] = time.perf_counter() - t
    t = time.perf_counter()
    await conn.execute("VACUUM ANALYZE pals")
    await conn.execute("VACUUM ANALYZE calendar_events")
    await conn.execute("VACUUM ANALYZE joins")
    timings["vacuum_analyze"] = time.perf_counter() - t
    return timings


# --- instrumentation (monkeypatched module globals: no app code is edited) --------------------

class Probe:
    """Counts and times calls of functions reconcile/replan_event look up as module globals."""

    def __init__(self) -> None:
        self.stats: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def reset(self) -> None:
        self.stats.clear()

    def wrap_async(self, module: Any, name: str) -> None:
        fn = getattr(module, name)
        stats = self.stats

        async def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return await fn(*a, **k)
            finally:
                s = stats[name]
                s[0] += 1
                s[1] += time.perf_counter() - t

        setattr(module, name, wrapper)

    def wrap_sync(self, module: Any, name: str) -> None:
        fn = getattr(module, name)
        stats = self.stats

        def wrapper(*a: Any, **k: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                s = stats[name]
                s[0] += 1
                s[1] += time.perf_counter() - t

        setattr(module, name, wrapper)

    def summary(self) -> str:
        return ", ".join(f"{k} {int(v[0])}x {fmt_s(v[1])}" for k, v in sorted(self.stats.items(), key=lambda kv: -kv[1][1]))


def instrument() -> Probe:
    import app.services.joins as J

    probe = Probe()
    for name in ("replan_event", "enqueue", "_is_duplicate", "_create", "record_event"):
        probe.wrap_async(J, name)
    for name in ("expand_occurrences",):
        probe.wrap_sync(J, name)
    return probe


# --- measurements -------------------------------------------------------------------------------

async def timed_tick(now: datetime, probe: Probe) -> tuple[float, float, dict[str, int], str]:
    from app.services.joins import reconcile

    probe.reset()
    cpu0, t0 = time.process_time(), time.perf_counter()
    result = await reconcile(now)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return wall, cpu, result, probe.summary()


async def event_ids(conn, offset: int, count: int) -> list[int]:
    """`count` event ids from position `offset` (wrapping around, for small --pals)."""
    return [r["id"] for r in await conn.fetch(
        "SELECT id FROM calendar_events ORDER BY id OFFSET ($1 % GREATEST((SELECT count(*) FROM calendar_events) - $2, 1)) LIMIT $2",
        offset, count)]


async def make_stale(conn, now: datetime, days: int, ids: list[int], *, behind: timedelta, drop_last_every: int) -> None:
    """Mark events as planned `behind` ago. For every `drop_last_every`-th of them (1 = all, 0 = none)
    delete the last scheduled join, which the replan then has to create again: what a horizon that
    moved on by a day finds."""
    await conn.execute("UPDATE calendar_events SET planned_until = $1 WHERE id = ANY($2::bigint[])",
                       now + timedelta(days=days) - behind, ids)
    chosen = ids[::drop_last_every] if drop_last_every else []
    if chosen:
        await conn.execute("""
            DELETE FROM joins j USING (
                SELECT DISTINCT ON (calendar_event) id FROM joins
                WHERE calendar_event = ANY($1::bigint[]) AND status = 'scheduled'
                ORDER BY calendar_event, start_at DESC) last
            WHERE j.id = last.id
        """, chosen)


async def replan_sample(conn, now: datetime, days: int, count: int, *, behind: timedelta, offset: int,
                        drop_last: bool, budget_s: float, probe: Probe) -> dict[str, Any]:
    """replan_event timed one event at a time (each made stale just before), within a time budget."""
    from app.services import joins as J

    ids = await event_ids(conn, offset, count)
    probe.reset()
    times: list[float] = []
    totals: dict[str, int] = defaultdict(int)
    deadline = time.perf_counter() + budget_s
    for pk in ids:
        await make_stale(conn, now, days, [pk], behind=behind, drop_last_every=1 if drop_last else 0)
        t = time.perf_counter()
        out = await J.replan_event(pk, now)
        times.append(time.perf_counter() - t)
        for k, v in out.items():
            totals[k] += v
        if time.perf_counter() > deadline:
            break
    return {"n": len(times), "asked": len(ids), "p50": pct(times, 50), "p99": pct(times, 99),
            "mean": statistics.fmean(times) if times else float("nan"), "totals": dict(totals),
            "breakdown": probe.summary(), "per_call": {k: v[1] / max(v[0], 1) for k, v in probe.stats.items()}}


async def explain(conn, sql: str) -> tuple[str, float]:
    rows = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}")
    lines = [r[0] for r in rows]
    ms = float("nan")
    for line in lines:
        m = re.search(r"Execution Time: ([\d.]+) ms", line)
        if m:
            ms = float(m.group(1))
    return "\n".join(lines), ms


async def explain_tick_queries(conn, now: datetime, sample_event: dict[str, Any]) -> dict[str, tuple[str, float]]:
    from app.config import get_settings
    from app.services.joins import ACTIVE, ENQUEUE_WINDOW, REPLANS_PER_TICK
    from app.tables import CalendarEvent, Join

    stale_before = now + get_settings().planning_horizon - timedelta(hours=1)
    queries = {
        "stale events (reconcile)": CalendarEvent.select(CalendarEvent.id).where(
            (CalendarEvent.decision == "accepted") & (CalendarEvent.cancelled == False)  # noqa: E712
            & ((CalendarEvent.planned_until.is_null()) | (CalendarEvent.planned_until < stale_before))
        ).order_by(CalendarEvent.planned_until).limit(REPLANS_PER_TICK),
        "due scheduled joins (reconcile)": Join.select(Join.id, Join.plan_version, Join.join_at).where(
            (Join.status == "scheduled") & (Join.join_at <= now + ENQUEUE_WINDOW)),
        "joins of one event (replan_event)": Join.select().where(Join.calendar_event == sample_event["id"]),
        "duplicate check (_is_duplicate, per created join)": Join.select(
            Join.id, Join.start_at, Join.end_at, Join.calendar_event).where(
            (Join.pal == sample_event["pal"]) & (Join.meeting_url == sample_event["meeting_url"])
            & Join.status.is_in(["scheduled", *ACTIVE])),
    }
    out = {}
    for name, q in queries.items():
        out[name] = await explain(conn, str(q))
    return out


# --- Redis memory -------------------------------------------------------------------------------

async def redis_used_memory(r) -> int:
    return int((await r.info("memory"))["used_memory"])


async def redis_memory(conn, r, count: int, now: datetime) -> dict[str, Any]:
    """Enqueue `count` deferred run_join jobs for real future joins beyond the window, like the service."""
    from app.keys import ARQ_QUEUE, JOB_RUN_JOIN, join_job_id
    from app.queue import enqueue
    from app.services.joins import ENQUEUE_WINDOW

    rows = await conn.fetch("""SELECT id, plan_version, join_at FROM joins WHERE status = 'scheduled' AND join_at > $1
                               ORDER BY join_at LIMIT $2""", now + ENQUEUE_WINDOW, count)
    queue_before = await r.zcard(ARQ_QUEUE)
    await asyncio.sleep(0.5)
    before = await redis_used_memory(r)
    zset_before = await r.memory_usage(ARQ_QUEUE, samples=0) or 0
    lat: list[float] = []
    t0 = time.perf_counter()
    for row in rows:
        t = time.perf_counter()
        ok = await enqueue(JOB_RUN_JOIN, row["id"], row["plan_version"], job_id=join_job_id(row["id"], row["plan_version"]),
                           at=row["join_at"])
        lat.append(time.perf_counter() - t)
        if not ok:
            raise SystemExit(f"enqueue refused for join {row['id']}")
    enqueue_s = time.perf_counter() - t0
    await asyncio.sleep(0.5)
    after = await redis_used_memory(r)
    zset_after = await r.memory_usage(ARQ_QUEUE, samples=0) or 0
    sample_ids = [join_job_id(row["id"], row["plan_version"]) for row in rows[:: max(len(rows) // 200, 1)]]
    key_sizes = [await r.memory_usage(f"arq:job:{jid}", samples=0) or 0 for jid in sample_ids]
    ttl = await r.ttl(f"arq:job:{sample_ids[-1]}")
    last_defer = (rows[-1]["join_at"] - datetime.now(timezone.utc)).total_seconds()
    value_len = await r.strlen(f"arq:job:{sample_ids[0]}")
    # take them out again (the rest of the bench runs with the windowed queue only)
    job_ids = [join_job_id(row["id"], row["plan_version"]) for row in rows]
    for i in range(0, len(job_ids), 1000):
        chunk = job_ids[i:i + 1000]
        await r.delete(*[f"arq:job:{j}" for j in chunk])
        await r.zrem(ARQ_QUEUE, *chunk)
    return {
        "count": len(rows), "queue_before": queue_before, "used_delta_per_job": (after - before) / max(len(rows), 1),
        "key_per_job": statistics.fmean(key_sizes), "zset_per_job": (zset_after - zset_before) / max(len(rows), 1),
        "value_bytes": value_len, "ttl_s": ttl, "last_defer_s": last_defer,
        "enqueue_p50": pct(lat, 50), "enqueue_p99": pct(lat, 99), "enqueue_rate": len(rows) / enqueue_s,
    }


# --- precision: the probe worker (runs in a subprocess) ----------------------------------------

def worker_knobs() -> dict[str, Any]:
    """max_jobs / poll_delay as production's WorkerSettings set them (arq defaults otherwise)."""
    import inspect

    from arq.worker import Worker

    from workers.settings import WorkerSettings

    defaults = {k: p.default for k, p in inspect.signature(Worker.__init__).parameters.items()}
    return {"max_jobs": getattr(WorkerSettings, "max_jobs", defaults["max_jobs"]),
            "poll_delay": getattr(WorkerSettings, "poll_delay", defaults["poll_delay"]),
            "allow_abort_jobs": getattr(WorkerSettings, "allow_abort_jobs", defaults["allow_abort_jobs"])}


async def probe_worker_main(cfg: dict[str, Any]) -> None:
    """An arq Worker with production's knobs, a probe job, and optionally back-to-back reconcile ticks
    in the same process and event loop (the cron runs there too)."""
    from arq import func
    from arq.connections import RedisSettings
    from arq.worker import Worker

    from app import db

    knobs = worker_knobs()

    async def probe(ctx: dict[str, Any], due_ms: int) -> None:
        started_ms = time.time() * 1000
        await ctx["redis"].rpush(RESULTS_KEY, json.dumps([due_ms, started_ms, ctx.get("score")]))

    async def load_loop(redis) -> None:  # type: ignore[no-untyped-def]
        import asyncpg

        from app.services.joins import reconcile

        conn = await asyncpg.connect(os.environ["DATABASE_URL"])
        base_now = datetime.fromisoformat(cfg["now"])
        t_start = time.monotonic()
        per_tick, offset, n_events = cfg["stale_per_tick"], 0, cfg["events"]
        try:
            while True:
                now = base_now + timedelta(seconds=time.monotonic() - t_start)
                ids = await conn.fetch("SELECT id FROM calendar_events ORDER BY id OFFSET $1 LIMIT $2", offset, per_tick)
                await conn.execute("UPDATE calendar_events SET planned_until = $1 WHERE id = ANY($2::bigint[])",
                                   now + timedelta(days=cfg["days"]) - timedelta(minutes=61), [r["id"] for r in ids])
                offset = (offset + per_tick) % max(n_events - per_tick, 1)
                t = time.perf_counter()
                result = await reconcile(now)
                await redis.rpush(TICKS_KEY, json.dumps([time.perf_counter() - t, result]))
        finally:
            await conn.close()

    tasks: list[asyncio.Task] = []

    async def startup(ctx: dict[str, Any]) -> None:
        if cfg["load"]:
            await db.open_pool()
            tasks.append(asyncio.create_task(load_loop(ctx["redis"])))

    async def shutdown(ctx: dict[str, Any]) -> None:
        for t in tasks:
            t.cancel()
        if cfg["load"]:
            await db.close_pool()

    worker = Worker(functions=[func(probe, name="probe", keep_result=0, max_tries=1)],
                    redis_settings=RedisSettings.from_dsn(os.environ["REDIS_URL"]), queue_name=PROBE_QUEUE,
                    max_jobs=knobs["max_jobs"], poll_delay=knobs["poll_delay"], allow_abort_jobs=knobs["allow_abort_jobs"],
                    health_check_interval=5, on_startup=startup, on_shutdown=shutdown, handle_signals=True)
    print(f"probe worker: {knobs}, load={cfg['load']}", flush=True)
    await worker.async_run()


def start_probe_worker(name: str, cfg: dict[str, Any], days: int):  # type: ignore[no-untyped-def]
    env = bench_env()
    env["PLANNING_HORIZON_DAYS"] = str(days)
    return C.start(name, [C.PY, str(Path(__file__).resolve()), "--probe-worker", json.dumps(cfg)], env)


async def wait_worker_ready(r, proc, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"probe worker exited: {C.tail_log(proc)}")
        if await r.exists(f"{PROBE_QUEUE}:health-check"):
            return
        await asyncio.sleep(0.1)
    raise SystemExit(f"probe worker not ready: {C.tail_log(proc)}")


async def run_probes(r, pool, label: str, dues_ms: list[int], timeout: float) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    await r.delete(RESULTS_KEY)
    for i, due in enumerate(dues_ms):
        await pool.enqueue_job("probe", due, _job_id=f"probe:{label}:{i}", _queue_name=PROBE_QUEUE,
                               _defer_until=datetime.fromtimestamp(due / 1000, timezone.utc))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and await r.llen(RESULTS_KEY) < len(dues_ms):
        await asyncio.sleep(0.25)
    raw = await r.lrange(RESULTS_KEY, 0, -1)
    late = [(json.loads(x)[1] - json.loads(x)[0]) / 1000 for x in raw]
    return {"label": label, "n": len(late), "asked": len(dues_ms), "p50": pct(late, 50), "p99": pct(late, 99),
            "max": max(late, default=float("nan")), "min": min(late, default=float("nan"))}


async def precision(r, args, n_events: int, now: datetime, window_size: int) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(REDIS_URL))
    results = []
    span = args.probe_span

    def spread(n: int) -> list[int]:
        start = time.time() * 1000 + 2000
        step = span * 1000 / n
        return [int(start + i * step + (i * 37) % int(max(step, 1))) for i in range(n)]

    try:
        # idle worker: distinct instants, then a burst of one slot due at the same instant
        await r.delete(PROBE_QUEUE, TICKS_KEY)
        w = start_probe_worker("probe-worker-idle", {"load": False}, args.days)
        try:
            await wait_worker_ready(r, w)
            await asyncio.sleep(1)
            results.append(await run_probes(r, pool, "idle", spread(args.probes), span + 30))
            burst = min(window_size, args.burst_max)
            due = int(time.time() * 1000 + 2000 + burst * 2.5)  # after all are enqueued
            res = await run_probes(r, pool, f"burst of {burst} due at one instant (idle worker)", [due] * burst,
                                   burst / 10 + 60)
            results.append(res)
        finally:
            C.stop(w)
        # loaded worker: back-to-back steady-state ticks in the worker's own loop + one CPU burner
        await r.delete(f"{PROBE_QUEUE}:health-check", TICKS_KEY)
        cfg = {"load": True, "now": now.isoformat(), "days": args.days, "events": n_events,
               "stale_per_tick": max(math.ceil(n_events / 60), 1)}
        w = start_probe_worker("probe-worker-load", cfg, args.days)
        burner = C.start("cpu-burner", [C.PY, "-c", f"import time\nend = time.time() + {span + 120}\nwhile time.time() < end: pass"],
                         bench_env())
        try:
            await wait_worker_ready(r, w)
            deadline = time.monotonic() + 180
            while await r.llen(TICKS_KEY) < 1 and time.monotonic() < deadline:  # a tick has run: caches warm
                if w.poll() is not None:
                    raise SystemExit(f"probe worker exited: {C.tail_log(w)}")
                await asyncio.sleep(0.2)
            ticks_before = await r.llen(TICKS_KEY)
            res = await run_probes(r, pool, f"ticks in the worker + CPU burner ({cfg['stale_per_tick']} replans/tick)",
                                   spread(args.probes), span + 60)
            ticks = [json.loads(x)[0] for x in await r.lrange(TICKS_KEY, 0, -1)]
            res["ticks"] = len(ticks) - ticks_before
            res["tick_median"] = statistics.median(ticks) if ticks else float("nan")
            results.append(res)
        finally:
            C.stop(burner)
            C.stop(w)
    finally:
        await pool.aclose()
    return results


# --- what-if indexes (bench database only) ------------------------------------------------------

WHATIF_INDEXES = [
    ("joins_bench_due_idx", "CREATE INDEX joins_bench_due_idx ON joins (join_at) WHERE status = 'scheduled'"),
    ("joins_bench_pal_live_idx", "CREATE INDEX joins_bench_pal_live_idx ON joins (pal, meeting_url) "
                                 "WHERE status IN ('scheduled', 'dispatching', 'joining', 'waiting_room', 'in_call')"),
]


# --- main ---------------------------------------------------------------------------------------

async def amain(args: argparse.Namespace) -> None:
    t_total = time.perf_counter()
    use_env(args.days)
    import asyncpg
    import redis.asyncio as aioredis

    from app import db
    from app.queue import close_arq_pool
    from app.redis_client import close_redis
    from app.services import joins as J

    C.install_cleanup()
    r = aioredis.from_url(REDIS_URL)
    await drop_database()
    await db.migrate()
    await db.open_pool(min_size=2, max_size=10)
    await r.flushdb()
    conn = await asyncpg.connect(DATABASE_URL)
    out: dict[str, Any] = {"n": args.pals, "days": args.days, "history": args.history_days}
    try:
        real_now = datetime.now(timezone.utc).replace(microsecond=0)
        now = choose_now(real_now)
        log(f"bench now = {now.isoformat()} (real {real_now.isoformat()}); {args.pals:,} PALs x {args.days} days "
            f"+ {args.history_days} days of history; horizon {args.days} d; database {db_name()}, Redis {REDIS_URL}")
        tpl = await capture_template(now)
        log(f"template invite accepted through the real intake; planner stored {tpl['template_joins']} joins for it")
        out["load"] = await bulk_load(conn, tpl, args.pals, args.days, args.history_days, now)
        await r.flushdb()  # the template's own job, if any
        counts = await conn.fetchrow("""SELECT (SELECT count(*) FROM pals) pals, (SELECT count(*) FROM calendar_events) events,
            (SELECT count(*) FROM joins WHERE status = 'scheduled') scheduled, (SELECT count(*) FROM joins) joins,
            (SELECT count(*) FROM joins WHERE status = 'scheduled' AND join_at <= $1) in_window,
            pg_size_pretty(pg_total_relation_size('joins')) joins_size,
            pg_size_pretty(pg_total_relation_size('calendar_events')) events_size""", now + J.ENQUEUE_WINDOW)
        out["counts"] = dict(counts)
        log(f"bulk load {', '.join(f'{k} {v:.1f} s' for k, v in out['load'].items())}: {dict(counts)}")
        indexes = await conn.fetch("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'joins' ORDER BY 1")
        out["indexes"] = [r_["indexdef"] for r_ in indexes]
        probe = instrument()

        # 1. replan_event on a sample
        sample_noop = await replan_sample(conn, now, args.days, args.sample, behind=timedelta(minutes=61), offset=0,
                                          drop_last=False, budget_s=args.sample_budget, probe=probe)
        log(f"replan_event, hourly extension (no change) on {sample_noop['n']} events: p50 {fmt_s(sample_noop['p50'])} "
            f"p99 {fmt_s(sample_noop['p99'])}; {sample_noop['totals']}; {sample_noop['breakdown']}")
        if any(sample_noop["totals"].get(k) for k in ("created", "moved", "cancelled")):
            log("WARNING: the bulk rows differ from what the planner stores (see totals above)")
        sample_create = await replan_sample(conn, now, args.days, args.sample, behind=timedelta(days=1, minutes=1),
                                            offset=args.sample, drop_last=True, budget_s=args.sample_budget, probe=probe)
        log(f"replan_event, a day behind (creates 1 join) on {sample_create['n']}/{sample_create['asked']} events: "
            f"p50 {fmt_s(sample_create['p50'])} p99 {fmt_s(sample_create['p99'])}; {sample_create['totals']}; "
            f"{sample_create['breakdown']}")
        out["sample_noop"], out["sample_create"] = sample_noop, sample_create

        # 2. ticks
        ticks: dict[str, Any] = {}
        wall, cpu, res, br = await timed_tick(now, probe)
        ticks["nothing stale, empty Redis (enqueues the window)"] = {"walls": [wall], "cpu": cpu, "result": res, "breakdown": br}
        log(f"tick, nothing stale, empty Redis: {fmt_s(wall)} (cpu {fmt_s(cpu)}) {res}; {br}")
        walls, last = [], None
        for _ in range(args.ticks):
            wall, cpu, res, br = await timed_tick(now, probe)
            walls.append(wall)
            last = (cpu, res, br)
        ticks["nothing stale, window already queued"] = {"walls": walls, "cpu": last[0], "result": last[1], "breakdown": last[2]}
        log(f"tick, nothing stale, window queued: min {fmt_s(min(walls))} median {fmt_s(statistics.median(walls))} {last[1]}; {last[2]}")
        per_tick = math.ceil(args.pals / 60)
        walls, last = [], None
        for i in range(args.ticks):
            await make_stale(conn, now, args.days, await event_ids(conn, 2 * args.sample + i * per_tick, per_tick),
                             behind=timedelta(minutes=61), drop_last_every=24)
            wall, cpu, res, br = await timed_tick(now, probe)
            walls.append(wall)
            last = (cpu, res, br)
            log(f"  steady-state tick {i + 1}: {fmt_s(wall)} (cpu {fmt_s(cpu)}) {res}; {br}")
        ticks[f"steady state: {per_tick:,} hourly replans (1 in 24 creates a join)"] = {
            "walls": walls, "cpu": last[0], "result": last[1], "breakdown": last[2]}
        # catch-up: REPLANS_PER_TICK events a day behind, each creating a join; scaled to the time budget
        est = J.REPLANS_PER_TICK * sample_create["mean"]
        n_catch = J.REPLANS_PER_TICK if not est > args.tick_budget else max(int(args.tick_budget / max(sample_create["mean"], 1e-6)), 20)
        orig = J.REPLANS_PER_TICK
        J.REPLANS_PER_TICK = n_catch
        try:
            await make_stale(conn, now, args.days, await event_ids(conn, 2 * args.sample + args.ticks * per_tick, n_catch),
                             behind=timedelta(days=1, minutes=1), drop_last_every=1)
            wall, cpu, res, br = await timed_tick(now, probe)
        finally:
            J.REPLANS_PER_TICK = orig
        catch = {"walls": [wall], "cpu": cpu, "result": res, "breakdown": br, "measured_events": n_catch,
                 "extrapolated": wall * orig / n_catch}
        ticks[f"catch-up: {orig:,} events a day behind (each creates a join)"] = catch
        log(f"tick, catch-up with {n_catch} day-behind events: {fmt_s(wall)} (cpu {fmt_s(cpu)}) {res}; {br}"
            + (f"; extrapolated to {orig}: {fmt_s(catch['extrapolated'])}" if n_catch != orig else ""))
        out["ticks"] = ticks

        # 3. EXPLAIN ANALYZE, then what-if indexes
        sample_event = dict(await conn.fetchrow("SELECT id, pal, meeting_url FROM calendar_events ORDER BY id OFFSET $1 LIMIT 1",
                                                args.pals // 2))
        plans = await explain_tick_queries(conn, now, sample_event)
        out["explain"] = plans
        for name, (text, ms) in plans.items():
            log(f"EXPLAIN ANALYZE {name}: {ms:.2f} ms\n    " + "\n    ".join(text.splitlines()))
        if not args.no_whatif:
            for _, ddl in WHATIF_INDEXES:
                t = time.perf_counter()
                await conn.execute(ddl)
                log(f"what-if: {ddl} ({fmt_s(time.perf_counter() - t)})")
            await conn.execute("ANALYZE joins")
            plans2 = await explain_tick_queries(conn, now, sample_event)
            out["explain_whatif"] = plans2
            for name, (text, ms) in plans2.items():
                log(f"what-if EXPLAIN ANALYZE {name}: {ms:.2f} ms\n    " + "\n    ".join(text.splitlines()))
            sample_create2 = await replan_sample(conn, now, args.days, args.sample, behind=timedelta(days=1, minutes=1),
                                                 offset=args.sample * 3 + (args.ticks + 1) * per_tick + n_catch,
                                                 drop_last=True, budget_s=args.sample_budget, probe=probe)
            out["sample_create_whatif"] = sample_create2
            log(f"what-if replan_event, a day behind, on {sample_create2['n']} events: p50 {fmt_s(sample_create2['p50'])} "
                f"p99 {fmt_s(sample_create2['p99'])}; {sample_create2['breakdown']}")
            walls, last = [], None
            for i in range(args.ticks):
                await make_stale(conn, now, args.days, await event_ids(conn, i * per_tick, per_tick),
                                 behind=timedelta(minutes=61), drop_last_every=24)
                wall, cpu, res, br = await timed_tick(now, probe)
                walls.append(wall)
                last = (cpu, res, br)
            out["steady_whatif"] = {"walls": walls, "cpu": last[0], "result": last[1], "breakdown": last[2]}
            log(f"what-if steady-state tick: min {fmt_s(min(walls))} median {fmt_s(statistics.median(walls))}; {last[2]}")
            orig = J.REPLANS_PER_TICK
            est = orig * sample_create2["mean"]
            n_catch2 = orig if not est > args.tick_budget else max(int(args.tick_budget / max(sample_create2["mean"], 1e-6)), 20)
            J.REPLANS_PER_TICK = n_catch2
            try:
                await make_stale(conn, now, args.days, await event_ids(conn, args.ticks * per_tick, n_catch2),
                                 behind=timedelta(days=1, minutes=1), drop_last_every=1)
                wall, cpu, res, br = await timed_tick(now, probe)
            finally:
                J.REPLANS_PER_TICK = orig
            out["catch_whatif"] = {"wall": wall, "cpu": cpu, "result": res, "breakdown": br, "measured_events": n_catch2,
                                   "extrapolated": wall * orig / n_catch2}
            log(f"what-if catch-up tick with {n_catch2} events: {fmt_s(wall)} {res}; {br}")
            for name, _ in WHATIF_INDEXES:
                await conn.execute(f"DROP INDEX {name}")

        # 4. Redis memory
        mem = await redis_memory(conn, r, args.redis_jobs, now)
        out["redis"] = mem
        log(f"Redis: {mem['count']:,} deferred jobs: used_memory +{mem['used_delta_per_job']:.0f} B/job; MEMORY USAGE key "
            f"{mem['key_per_job']:.0f} B + queue ZSET {mem['zset_per_job']:.0f} B/job; value {mem['value_bytes']} B; "
            f"TTL of the last {mem['ttl_s']} s for a {mem['last_defer_s']:.0f} s deferral; enqueue p50 {fmt_s(mem['enqueue_p50'])} "
            f"p99 {fmt_s(mem['enqueue_p99'])} ({mem['enqueue_rate']:.0f}/s)")

        # 5. precision
        if args.wait_quiet > 0:
            busy = await asyncio.to_thread(C.wait_quiet, args.wait_quiet)
            out["busy_before_precision"] = busy
        out["precision"] = await precision(r, args, args.pals, now, counts["in_window"])
        for p in out["precision"]:
            log(f"precision [{p['label']}]: {p['n']}/{p['asked']} probes: p50 {fmt_s(p['p50'])} p99 {fmt_s(p['p99'])} "
                f"max {fmt_s(p['max'])}" + (f"; {p['ticks']} ticks ran, median {fmt_s(p['tick_median'])}" if "ticks" in p else ""))
    finally:
        await conn.close()
        await db.close_pool()
        await close_arq_pool()
        await close_redis()
        C.stop_all()
        if not args.keep:
            await r.flushdb()
            await drop_database()
        await r.aclose()
    out["total_s"] = time.perf_counter() - t_total
    report(out, args)


def report(out: dict[str, Any], args: argparse.Namespace) -> None:
    from app.services.joins import ENQUEUE_WINDOW, REPLANS_PER_TICK

    n, days, counts = out["n"], out["days"], out["counts"]
    knobs = worker_knobs()
    print()
    print(f"### Join planning at {n:,} PALs / {counts['scheduled']:,} future occurrences ({C.today()})")
    print()
    print(f"Machine: {C.machine()}; PostgreSQL 15 and Redis 7 on loopback. `bench/planning_bench.py"
          f"{' --quick' if args.quick else ''}`: {n:,} PALs, one accepted daily Meet series each (stored "
          f"Google invite with VTIMEZONE), {counts['scheduled']:,} scheduled joins over {days} days "
          f"(PLANNING_HORIZON_DAYS={days}) + {counts['joins'] - counts['scheduled']:,} past joins; starts on :00/:30, "
          f"{counts['in_window']:,} joins in the {int(ENQUEUE_WINDOW.total_seconds() // 60)}-minute window. "
          f"`joins` is {counts['joins_size']}, `calendar_events` {counts['events_size']}. Tick = `reconcile(now)` in this "
          f"process with a pool of 10; REPLANS_PER_TICK={REPLANS_PER_TICK}.")
    print()
    rows: list[list[object]] = []
    sn, sc = out["sample_noop"], out["sample_create"]
    rows.append([f"replan_event, hourly horizon extension, no change ({sn['n']} events)",
                 f"p50 {fmt_s(sn['p50'])}, p99 {fmt_s(sn['p99'])}", sn["breakdown"]])
    rows.append([f"replan_event, a day behind, creates 1 join ({sc['n']} events)",
                 f"p50 {fmt_s(sc['p50'])}, p99 {fmt_s(sc['p99'])}", sc["breakdown"]])
    for name, t in out["ticks"].items():
        walls = t["walls"]
        fig = fmt_s(walls[0]) if len(walls) == 1 else f"min {fmt_s(min(walls))}, median {fmt_s(statistics.median(walls))}"
        if "extrapolated" in t and t["measured_events"] != REPLANS_PER_TICK:
            fig = f"{fmt_s(walls[0])} for {t['measured_events']} events, so ~{fmt_s(t['extrapolated'])} for {REPLANS_PER_TICK:,}"
        rows.append([f"tick: {name}", fig, f"{t['result']}; {t['breakdown']}"])
    if "steady_whatif" in out:
        sw, cw, scw = out["steady_whatif"], out["catch_whatif"], out["sample_create_whatif"]
        rows.append(["what-if indexes: replan_event, a day behind",
                     f"p50 {fmt_s(scw['p50'])}, p99 {fmt_s(scw['p99'])}", scw["breakdown"]])
        rows.append(["what-if indexes: steady-state tick",
                     f"min {fmt_s(min(sw['walls']))}, median {fmt_s(statistics.median(sw['walls']))}", sw["breakdown"]])
        fig = fmt_s(cw["wall"]) if cw["measured_events"] == REPLANS_PER_TICK else \
            f"{fmt_s(cw['wall'])} for {cw['measured_events']} events, so ~{fmt_s(cw['extrapolated'])} for {REPLANS_PER_TICK:,}"
        rows.append(["what-if indexes: catch-up tick", fig, cw["breakdown"]])
    m = out["redis"]
    per_job = m["used_delta_per_job"]
    rows.append([f"Redis per deferred `join:<id>:v1` job ({m['count']:,} enqueued)",
                 f"{per_job:.0f} B (INFO used_memory delta)",
                 f"MEMORY USAGE: job key {m['key_per_job']:.0f} B + queue ZSET {m['zset_per_job']:.0f} B; pickled value "
                 f"{m['value_bytes']} B; key TTL = deferral + 1 day"])
    rows.append(["Redis if every future occurrence were enqueued",
                 f"{per_job * counts['scheduled'] / 2**20:,.0f} MiB for {counts['scheduled']:,} jobs",
                 f"vs {per_job * counts['in_window'] / 2**20:,.1f} MiB for the {counts['in_window']:,} in the window (what the service keeps)"])
    rows.append(["enqueue of one deferred job (arq `enqueue_job`, sequential)",
                 f"p50 {fmt_s(m['enqueue_p50'])}, p99 {fmt_s(m['enqueue_p99'])}", f"{m['enqueue_rate']:,.0f} jobs/s"])
    for p in out["precision"]:
        extra = f"{p['n']}/{p['asked']} probes"
        if "ticks" in p:
            extra += f"; {p['ticks']} ticks ran meanwhile, median {fmt_s(p['tick_median'])}"
        rows.append([f"precision, start - defer_until: {p['label']}",
                     f"p50 {fmt_s(p['p50'])}, p99 {fmt_s(p['p99'])}, max {fmt_s(p['max'])}", extra])
    print(C.md_table(["measure", "figure", "detail"], rows))
    print()
    print(f"Probe worker: arq Worker with WorkerSettings' max_jobs={knobs['max_jobs']}, poll_delay={knobs['poll_delay']} s "
          f"(arq default), one process. Bulk load (not a measured figure): "
          + ", ".join(f"{k} {v:.0f} s" for k, v in out["load"].items()) + f". Whole run {out['total_s'] / 60:.1f} min.")
    print()
    print("Indexes on joins during the run: " + "; ".join(f"`{d}`" for d in out["indexes"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10,000 PALs / 100,000 occurrences, fewer samples and probes")
    ap.add_argument("--keep", action="store_true", help="keep the bench database and Redis db afterwards")
    ap.add_argument("--pals", type=int, help="PALs, one daily series each (default 100,000; quick 10,000)")
    ap.add_argument("--days", type=int, default=10, help="future days planned per series = PLANNING_HORIZON_DAYS (default 10)")
    ap.add_argument("--history-days", type=int, default=3, help="past days of finished joins per series (default 3)")
    ap.add_argument("--sample", type=int, help="events per replan_event sample (default 1,000; quick 200)")
    ap.add_argument("--sample-budget", type=float, help="max seconds per replan sample (default 60; quick 20)")
    ap.add_argument("--tick-budget", type=float, help="max seconds for the catch-up tick; fewer events and "
                                                       "extrapolation beyond it (default 90; quick 30)")
    ap.add_argument("--ticks", type=int, help="repetitions of each steady tick (default 3)")
    ap.add_argument("--redis-jobs", type=int, help="deferred jobs for the memory measure (default 20,000; quick 5,000)")
    ap.add_argument("--probes", type=int, help="precision probes per scenario (default 300; quick 100)")
    ap.add_argument("--probe-span", type=float, help="probes are deferred 2 s .. 2 s + span (default 18; quick 10)")
    ap.add_argument("--burst-max", type=int, default=3000, help="cap on the same-instant burst (default 3,000)")
    ap.add_argument("--wait-quiet", type=float, default=30, help="wait up to N s for an idle machine before precision")
    ap.add_argument("--no-whatif", action="store_true", help="skip the what-if indexes")
    ap.add_argument("--probe-worker", metavar="JSON", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.probe_worker:
        cfg = json.loads(args.probe_worker)
        sys.path.insert(0, str(C.ROOT))
        os.chdir(C.ROOT)
        asyncio.run(probe_worker_main(cfg))
        return
    q = args.quick
    args.pals = args.pals or (10_000 if q else 100_000)
    args.sample = args.sample or (200 if q else 1_000)
    args.sample_budget = args.sample_budget or (20.0 if q else 60.0)
    args.tick_budget = args.tick_budget or (30.0 if q else 90.0)
    args.ticks = args.ticks or 3
    args.redis_jobs = args.redis_jobs or (5_000 if q else 20_000)
    args.probes = args.probes or (100 if q else 300)
    args.probe_span = args.probe_span or (10.0 if q else 18.0)
    C.loopback_only(DATABASE_URL)
    C.loopback_only(REDIS_URL)
    asyncio.run(amain(args))


if __name__ == "__main__":
    main()
