"""Webhook deliveries: how many per second one worker sends to a fast receiver on loopback, and
how long an event takes from record_event to the receiver at a given rate.

A real worker process (`python -m app worker`, its deliveries sender woken by NOTIFY) sends;
PAL events are recorded with app/services/events.record_event, as the service does; this
process runs the receiver, which checks every signature with the `standardwebhooks` library.

1. Throughput: a backlog of N events is stored with the worker stopped; the worker starts and
   drains it. Deliveries/s = N / (last received - first received).
2. Latency: with the worker running, a producer process records events open-loop at fixed
   rates (shares of the measured throughput); latency = the receiver's wall clock when the body
   is in - the producer's wall clock when it called record_event (both on this host).

    .venv/bin/python bench/webhook_bench.py [--quick] [--pals 50] [--backlog 3000] [--seconds 10]

Empties the bench database (BENCH_DATABASE_URL) at start.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402


async def prepare(pals: int, receiver) -> None:
    from app import db
    from app.clock import utcnow
    from app.services import pals as pal_service
    from app.services import webhooks as webhook_service
    from app.services.accounts import create_account
    from app.services.faces import seed_stock_faces
    from app.tables import Account

    await db.open_pool(min_size=2, max_size=12)
    rows = await Account.raw("SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'migration'")
    await db.engine().run_ddl(f"TRUNCATE {', '.join(r['tablename'] for r in rows)} RESTART IDENTITY CASCADE")
    await seed_stock_faces()
    account, _ = await create_account("bench")
    hook = await webhook_service.create_webhook(account.id, {"url": receiver.url}, utcnow())
    receiver.secrets.append(hook["secret"])
    for i in range(pals):
        await pal_service.create_pal(account.id, {"pal_name": f"Bench {i}", "default_face_id": "r90bbd427f71"})


async def record(pal: dict, n: int) -> None:
    from app.services.events import record_event

    # `sent`: the wall clock when the event is recorded; the receiver (another process on the
    # same host) subtracts it from its own wall clock.
    await record_event(pal["pk"], "in_call", {"join_id": n, "status": "in_call", "reason": None,
                                              "sent": time.time()}, pal_id=pal["pal_id"])


async def produce(rate: float, seconds: float, base: int) -> None:
    """The producer process: record events open-loop at `rate` per second over the bench's PALs."""
    from app import db
    from app.tables import Pal

    await db.open_pool(min_size=2, max_size=12)
    pals = [{"pk": r["id"], "pal_id": r["pal_id"]} for r in await Pal.select(Pal.id, Pal.pal_id).order_by(Pal.id)]
    total = int(rate * seconds)
    start = time.monotonic()
    tasks = []
    for i in range(total):
        delay = start + i / rate - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(record(pals[i % len(pals)], base + i)))
    await asyncio.gather(*tasks)
    await db.close_pool()


def start_worker() -> object:
    return C.start("worker", [C.PY, "-m", "app", "worker"], C.bench_env(WEBHOOK_ALLOWED_HOSTS="127.0.0.1"))


async def wait_for(receiver, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len({r.message_id for r in receiver.received}) < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(receiver.received)} of {count} deliveries arrived in {timeout:.0f} s")
        await asyncio.sleep(0.02)


async def throughput(pals: list[dict], receiver, backlog: int) -> float:
    sem = asyncio.Semaphore(10)

    async def one(i: int) -> None:
        async with sem:
            await record(pals[i % len(pals)], i)

    await asyncio.gather(*(one(i) for i in range(backlog)))
    worker = start_worker()
    try:
        await wait_for(receiver, backlog, 600)
        cpu = C.cpu_seconds(worker.pid)  # start-up included: an upper bound
    finally:
        C.stop(worker)
    times = [r.at for r in receiver.received]
    unique = len({r.message_id for r in receiver.received})
    if unique != len(receiver.received):
        raise SystemExit(f"{len(receiver.received) - unique} duplicate deliveries")
    return (backlog - 1) / (max(times) - min(times)), cpu * 1000 / backlog


async def latency(receiver, rate: float, seconds: float, base: int) -> tuple[int, float, float, float]:
    """(events, p50 ms, p99 ms, max ms) with a producer process recording events at `rate` per second."""
    receiver.received.clear()
    total = int(rate * seconds)
    producer = C.start("producer", [C.PY, __file__, "--produce", f"{rate}:{seconds}:{base}"], C.bench_env())
    try:
        await wait_for(receiver, total, seconds + 120)
    finally:
        C.stop(producer)
    stray = [r for r in receiver.received if not base <= r.payload["data"]["join_id"] < base + total]
    if stray:
        raise SystemExit(f"{len(stray)} deliveries of earlier events arrived again: "
                         f"{[(r.message_id, r.payload['data']['join_id']) for r in stray][:5]}")
    lat = [(r.wall - r.payload["data"]["sent"]) * 1000 for r in receiver.received]
    return total, C.percentile(lat, 50), C.percentile(lat, 99), max(lat)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pals", type=int, default=50)
    parser.add_argument("--backlog", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--shares", default="0.25,0.5,0.8", help="latency rates, as shares of the throughput")
    parser.add_argument("--quick", action="store_true", help="--backlog 1000 --seconds 4")
    parser.add_argument("--produce", help=argparse.SUPPRESS)  # rate:seconds:base (the producer process)
    args = parser.parse_args()
    if args.quick:
        args.backlog, args.seconds = 1000, 4
    if args.produce:
        C.use_bench_env()
        rate, seconds, base = args.produce.split(":")
        await produce(float(rate), float(seconds), int(base))
        return
    C.install_cleanup()
    C.single_instance(C.BENCH_DATABASE_URL, C.BENCH_REDIS_URL)
    C.migrate()
    C.use_bench_env()
    from tests.webhook_receiver import Receiver

    receiver = await Receiver().start()
    await prepare(args.pals, receiver)
    print(f"machine: {C.machine()}")
    from app.tables import Pal

    pals = [{"pk": r["id"], "pal_id": r["pal_id"]} for r in await Pal.select(Pal.id, Pal.pal_id).order_by(Pal.id)]
    rate, cpu_ms = await throughput(pals, receiver, args.backlog)
    ok = all(r.verified for r in receiver.received)
    print(f"throughput: {args.backlog} deliveries over {args.pals} PALs: {rate:.0f} deliveries/s, "
          f"worker CPU {cpu_ms:.1f} ms per delivery (signatures verified: {ok})")
    worker = start_worker()
    await asyncio.sleep(3)  # the worker's start-up (crons, LISTEN) is not measured
    try:
        print("| rate (events/s) | events | p50 ms | p99 ms | max ms |")
        print("|---:|---:|---:|---:|---:|")
        for n, share in enumerate(float(s) for s in args.shares.split(",")):
            events, p50, p99, worst = await latency(receiver, rate * share, args.seconds, 10_000_000 * (n + 1))
            print(f"| {rate * share:.0f} ({share:.0%}) | {events} | {p50:.1f} | {p99:.1f} | {worst:.1f} |")
            assert all(r.verified for r in receiver.received)
    finally:
        C.stop(worker)
        await receiver.stop()


if __name__ == "__main__":
    asyncio.run(main())
