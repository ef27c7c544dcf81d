"""Sustained invites per second end to end: SMTP in, to the iMIP REPLY arriving at the relay.

Runs the real processes on 127.0.0.1: `python -m app smtp` (inbound) and `python -m app worker`
(arq: ingest, decide, outbox), with SMTP_RELAY_URL pointing at a capture sink this script
runs itself (aiosmtpd). It creates an account and a PAL whose allowlist accepts the organizer,
then sends distinct Google-style invitations (tests/invite_factory.py, one new UID each, the
meeting two days ahead so no bot ever starts) with aiosmtplib, and times each one from the
start of the SMTP send to the REPLY for that UID arriving at the sink.

For each concurrency level c, c senders each send an invite and wait for its REPLY before
sending the next (closed loop: c invites in flight end to end); a level stops after --count
invites or --seconds, whichever comes first. A final "burst" row sends --burst invites as fast
as 16 SMTP clients can, without waiting, and measures how fast the backlog drains.
Throughput = REPLYs received / (last REPLY - first send). Prints a markdown table.

    .venv/bin/python bench/invite_bench.py            # levels 1,4,16,32; <= 500 invites or 60 s each; burst 500
    .venv/bin/python bench/invite_bench.py --quick    # levels 1,8; <= 40 invites or 15 s each; burst 60

The bench database (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/pal_bench)
is emptied at start, and Redis db 13 (BENCH_REDIS_URL) is flushed at start and at the end.
--worker-poll-delay S starts the worker with arq's poll_delay overridden (an experiment; the
app's WorkerSettings leave arq's default of 0.5 s).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

ORGANIZER = "alex@acme.com"
UID_RE = re.compile(rb"^UID:(.+?)\r?$", re.M)
SEND_TIMEOUT = 30.0


class Sink:
    """The outbound relay stand-in: resolves the waiter for each REPLY's UID with its arrival time."""

    def __init__(self) -> None:
        self.waiters: dict[str, asyncio.Future] = {}
        self.received = 0
        self.unmatched = 0

    @staticmethod
    def reply_uid(raw: bytes) -> str | None:
        from email import message_from_bytes

        for part in message_from_bytes(raw).walk():  # compat32: cheap
            if part.get_content_type() == "text/calendar":
                data = part.get_payload(decode=True) or b""
                m = UID_RE.search(re.sub(rb"\r?\n[ \t]", b"", data))
                return m.group(1).decode().strip() if m else None
        return None

    async def handle_DATA(self, server, session, envelope) -> str:  # type: ignore[no-untyped-def]
        arrived = time.perf_counter()
        self.received += 1
        fut = self.waiters.pop(self.reply_uid(envelope.original_content or b"") or "", None)
        if fut is not None and not fut.done():
            fut.set_result(arrived)
        else:
            self.unmatched += 1
        return "250 OK"


class Run:
    """One measured level: latencies of completed invites, and failures."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.latencies: list[float] = []  # s, send start -> REPLY at sink
        self.smtp: list[float] = []  # s, send start -> 250 from our SMTP server
        self.first_send = float("inf")
        self.last_reply = 0.0
        self.send_errors = 0
        self.lost = 0
        self.started_wall = datetime.now(timezone.utc)


def build_invites(n: int, pal_address: str) -> list[tuple[str, bytes]]:
    from tests.invite_factory import meeting

    out = []
    for i in range(n):
        uid = f"bench-{uuid.uuid4().hex}@google.com"
        _, msg = meeting(start_in=timedelta(days=2, minutes=i % 600), pal_address=pal_address, uid=uid,
                         organizer=ORGANIZER)
        C.authenticated_by_relay(msg, ORGANIZER)
        out.append((uid, msg.as_bytes()))
    return out


async def send_one(run: Run, sink: Sink, smtp_port: int, pal_address: str, uid: str, raw: bytes,
                   reply_timeout: float, wait: bool) -> asyncio.Future | None:
    import aiosmtplib

    loop = asyncio.get_running_loop()
    fut: asyncio.Future = loop.create_future()
    sink.waiters[uid] = fut
    t0 = time.perf_counter()
    run.first_send = min(run.first_send, t0)
    try:
        await aiosmtplib.send(raw, sender=ORGANIZER, recipients=[pal_address], hostname=C.HOST, port=smtp_port,
                              timeout=SEND_TIMEOUT)
    except Exception as exc:  # noqa: BLE001
        run.send_errors += 1
        sink.waiters.pop(uid, None)
        print(f"# send failed: {exc!r}", flush=True)
        return None
    run.smtp.append(time.perf_counter() - t0)

    async def settle() -> None:
        try:
            arrived = await asyncio.wait_for(fut, reply_timeout)
        except asyncio.TimeoutError:
            run.lost += 1
            sink.waiters.pop(uid, None)
            return
        run.latencies.append(arrived - t0)
        run.last_reply = max(run.last_reply, arrived)

    if wait:
        await settle()
        return None
    return asyncio.ensure_future(settle())


async def closed_loop(run: Run, sink: Sink, smtp_port: int, pal_address: str, invites: list[tuple[str, bytes]],
                      concurrency: int, seconds: float, reply_timeout: float) -> None:
    deadline = time.perf_counter() + seconds
    todo = iter(invites)

    async def sender() -> None:
        for uid, raw in todo:
            if time.perf_counter() >= deadline:
                return
            await send_one(run, sink, smtp_port, pal_address, uid, raw, reply_timeout, wait=True)

    await asyncio.gather(*(sender() for _ in range(concurrency)))


async def burst(run: Run, sink: Sink, smtp_port: int, pal_address: str, invites: list[tuple[str, bytes]],
                senders: int, seconds: float, reply_timeout: float) -> None:
    deadline = time.perf_counter() + seconds
    todo = iter(invites)
    pending: list[asyncio.Future] = []

    async def sender() -> None:
        for uid, raw in todo:
            if time.perf_counter() >= deadline:
                return
            f = await send_one(run, sink, smtp_port, pal_address, uid, raw, reply_timeout, wait=False)
            if f is not None:
                pending.append(f)

    await asyncio.gather(*(sender() for _ in range(senders)))
    await asyncio.gather(*pending)


async def queue_waits(since: datetime) -> tuple[float, float]:
    """Median seconds a message waited for its ingest job, and a reply for its flush job (from the DB).

    inbound_messages.processed_at and deliveries.created_at/sent_at (kind email) carry the `now` each
    job started with, so these are queue waits (arq poll delay + backlog), not processing time.
    """
    from app.tables import Account  # (InboundMessage has a column called `raw`)

    rows = await Account.raw(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM processed_at - received_at)) AS w "
        "FROM inbound_messages WHERE received_at >= {} AND processed_at IS NOT NULL", since)
    out_rows = await Account.raw(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - created_at)) AS w "
        "FROM deliveries WHERE kind = 'email' AND created_at >= {} AND sent_at IS NOT NULL", since)
    return float(rows[0]["w"] or 0), float(out_rows[0]["w"] or 0)


async def prepare() -> tuple[str, str]:
    """Empty the bench database and Redis db, create an account and a PAL; returns (pal_address, db name)."""
    import redis.asyncio as aioredis

    from app import db
    from app.services import pals as pal_service
    from app.services.accounts import create_account
    from app.services.faces import seed_stock_faces

    await db.open_pool(min_size=1, max_size=4)
    from app.tables import Account

    rows = await Account.raw("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'migration'")
    tables = [r["tablename"] for r in rows]
    await db.engine().run_ddl(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    await seed_stock_faces()
    redis = aioredis.from_url(C.BENCH_REDIS_URL)
    await redis.flushdb()
    await redis.aclose()
    account, _ = await create_account("bench-invites")
    username = f"bench-{uuid.uuid4().hex[:10]}"
    pal = await pal_service.create_pal(account.id, {
        "pal_name": "Bench", "system_prompt": "You take notes.", "pipeline_mode": "full",
        "default_face_id": "r90bbd427f71",
        "layers": {"conferencing": {"username": username, "allowlist": [".*@acme\\.com"]}},
    })
    return pal["conferencing_email"], C.BENCH_DATABASE_URL.rsplit("/", 1)[-1]


def summarize(run: Run, used: dict[str, float], waits: tuple[float, float]) -> dict:
    done = len(run.latencies)
    span = (run.last_reply - run.first_send) if done else float("nan")
    ms = [x * 1000 for x in run.latencies]
    per = 1000 / max(done, 1)
    return {
        "label": run.label, "done": done, "lost": run.lost, "send_errors": run.send_errors,
        "rate": done / span if done else 0.0, "span": span,
        "p50": C.percentile(ms, 50), "p99": C.percentile(ms, 99), "max": max(ms, default=float("nan")),
        "smtp_p50": C.percentile([x * 1000 for x in run.smtp], 50),
        "ingest_wait": waits[0] * 1000, "flush_wait": waits[1] * 1000,
        "cpu_smtp": used["smtp"] * per, "cpu_worker": used["worker"] * per, "cpu_pg": used["postgres"] * per,
        "cpu_bench": used["bench (this process)"] * per,
        "other": used["other"] / used["_wall"],
    }


async def amain(args: argparse.Namespace) -> None:
    from aiosmtpd.smtp import SMTP

    quick = args.quick
    default_levels = "1,8" if quick else "1,4,16,32"
    levels = [int(x) for x in (default_levels if args.levels is None else args.levels).split(",") if x.strip()]
    count = args.count or (40 if quick else 500)
    seconds = args.seconds or (15 if quick else 60)
    burst_n = args.burst if args.burst is not None else (60 if quick else 500)
    reply_timeout = args.reply_timeout

    pal_address, db_name = await prepare()
    sink = Sink()
    loop = asyncio.get_running_loop()
    sink_server = await loop.create_server(lambda: SMTP(sink, decode_data=False, hostname="sink.bench"),
                                           host=C.HOST, port=0)
    sink_port = sink_server.sockets[0].getsockname()[1]
    smtp_port = C.free_port()
    env = C.bench_env(SMTP_PORT=str(smtp_port), SMTP_RELAY_URL=f"smtp://{C.HOST}:{sink_port}",
                      PAL_EMAIL_DOMAIN=pal_address.rpartition("@")[2])
    smtp = C.start("smtp", [C.PY, "-m", "app", "smtp"], env)
    if args.worker_poll_delay is not None:
        code = ("import sys; from app.logs import setup_logging; setup_logging('worker'); "
                "from workers.settings import WorkerSettings as W; W.poll_delay = float(sys.argv[1]); "
                "from arq import run_worker; run_worker(W)")
        worker = C.start("worker", [C.PY, "-c", code, str(args.worker_poll_delay)], env)
    else:
        worker = C.start("worker", [C.PY, "-m", "app", "worker"], env)
    await asyncio.to_thread(C.wait_port, smtp_port, smtp)
    print(f"# logs in {C.log_dir()}; PAL {pal_address}; sink 127.0.0.1:{sink_port}", flush=True)

    # Warm-up (not measured): the worker is up once a REPLY comes back.
    warm = Run("warm-up")
    for uid, raw in build_invites(5, pal_address):
        await send_one(warm, sink, smtp_port, pal_address, uid, raw, 90, wait=True)
        if worker.poll() is not None:
            raise SystemExit(f"worker exited: {C.tail_log(worker)}")
    if len(warm.latencies) < 5:
        raise SystemExit(f"warm-up: only {len(warm.latencies)}/5 REPLYs; worker log:\n{C.tail_log(worker)}")

    from app.clock import utcnow

    results = []
    plans = [(f"closed loop, {c} in flight", c, False) for c in levels]
    if burst_n > 0:
        plans.append((f"burst of {burst_n}, 16 senders", 16, True))
    for label, c, is_burst in plans:
        if args.wait_quiet > 0:
            busy = await asyncio.to_thread(C.wait_quiet, args.wait_quiet)
            if busy > 0.3:
                print(f"# warning: machine busy ({busy:.2f} cores) before '{label}'; figures may be low", flush=True)
        invites = build_invites(burst_n if is_burst else count, pal_address)
        run = Run(label)
        since = utcnow()
        meter = C.CpuMeter({
            "smtp": C.pid_cpu(smtp.pid), "worker": C.pid_cpu(worker.pid),
            "postgres": lambda: C.cpu_by_comm("postgres", cmdline_has=f" {db_name} "),
        })
        meter.start()
        if is_burst:
            await burst(run, sink, smtp_port, pal_address, invites, c, seconds, reply_timeout)
        else:
            await closed_loop(run, sink, smtp_port, pal_address, invites, c, seconds, reply_timeout)
        used = meter.stop()
        r = summarize(run, used, await queue_waits(since))
        results.append(r)
        print(f"# {label}: {r['done']} REPLYs in {r['span']:.1f} s = {r['rate']:.1f}/s, p50 {r['p50']:.0f} ms, "
              f"p99 {r['p99']:.0f} ms, lost {r['lost']}, send errors {r['send_errors']}; SMTP 250 p50 "
              f"{r['smtp_p50']:.1f} ms; median queue wait ingest {r['ingest_wait']:.0f} ms, outbox "
              f"{r['flush_wait']:.0f} ms; CPU ms/invite smtp {r['cpu_smtp']:.1f} worker {r['cpu_worker']:.1f} "
              f"postgres {r['cpu_pg']:.1f} bench {r['cpu_bench']:.1f}; other {r['other']:.2f} cores", flush=True)
        for p in (smtp, worker):
            if p.poll() is not None:
                raise SystemExit(f"{p.bench_name} exited: {C.tail_log(p)}")  # type: ignore[attr-defined]

    sink_server.close()
    await sink_server.wait_closed()
    C.stop_all()
    import redis.asyncio as aioredis

    redis = aioredis.from_url(C.BENCH_REDIS_URL)
    await redis.flushdb()  # the accepted invites left deferred join jobs behind
    await redis.aclose()
    from app import db
    from workers.settings import WorkerSettings

    await db.close_pool()

    poll = (f"arq poll_delay overridden to {args.worker_poll_delay:g} s"
            if args.worker_poll_delay is not None else
            f"worker as shipped (arq poll_delay {getattr(WorkerSettings, 'poll_delay', 0.5):g} s)")
    print()
    print(f"### Invites end to end, SMTP in to REPLY at the relay ({C.today()})")
    print()
    print(f"Machine: {C.machine()}. One `python -m app smtp`, one `python -m app worker` ({poll}), "
          "PostgreSQL and Redis on loopback; the sender and the relay sink run in one more process on the "
          f"same cores. Each level: at most {count} invites or {seconds:g} s; the sink also counted "
          f"{sink.unmatched} unmatched replies.")
    print()
    rows = [[r["label"], r["done"], f"{r['rate']:.1f}", f"{r['p50']:.0f}", f"{r['p99']:.0f}",
             f"{r['smtp_p50']:.1f}", f"{r['ingest_wait']:.0f} / {r['flush_wait']:.0f}",
             f"{r['cpu_smtp']:.1f} / {r['cpu_worker']:.1f} / {r['cpu_pg']:.1f}", f"{r['other']:.2f}",
             r["lost"] + r["send_errors"]] for r in results]
    print(C.md_table(["load", "invites", "invites/s", "p50 ms", "p99 ms", "SMTP 250 p50 ms",
                      "queue wait p50 ms (ingest / outbox)", "CPU ms per invite (smtp / worker / postgres)",
                      "other CPU, cores", "lost"], rows))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--levels", help="comma-separated concurrency levels (default 1,4,16,32; quick 1,8)")
    ap.add_argument("--count", type=int, help="max invites per level (default 500; quick 40)")
    ap.add_argument("--seconds", type=float, help="max seconds of sending per level (default 60; quick 15)")
    ap.add_argument("--burst", type=int, help="invites in the final burst, 0 to skip (default 500; quick 60)")
    ap.add_argument("--reply-timeout", type=float, default=120, help="seconds to wait for each REPLY")
    ap.add_argument("--wait-quiet", type=float, default=60,
                    help="before each level wait up to this many seconds for the machine to be idle (0: don't)")
    ap.add_argument("--worker-poll-delay", type=float, help="experiment: override arq's poll_delay in the worker")
    C.run_bench(amain, ap.parse_args())


if __name__ == "__main__":
    main()
