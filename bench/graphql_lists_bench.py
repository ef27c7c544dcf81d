"""A page of 100 PALs with their upcoming joins and meetings over GraphQL: latency and SQL statements,
with the per-request DataLoaders (app/graphql/loaders.py) and with batching switched off.

The app runs in this process (httpx over ASGI, no network), against a dedicated database:
100 PALs of one account, each with 5 scheduled joins and 5 invitations. Each variant is
warmed up, then timed for --runs requests; statements are counted at asyncpg's Connection
(the pool's own connection resets aside). Prints a markdown table for docs/benchmarks.md.

    .venv/bin/python bench/graphql_lists_bench.py            # 30 runs per variant (~20 s)
    .venv/bin/python bench/graphql_lists_bench.py --runs 5

Environment: GQL_BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/pal_bench_gq),
GQL_BENCH_REDIS_URL (default redis://127.0.0.1:6379/12). Both must be loopback.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ["BENCH_DATABASE_URL"] = os.environ.get("GQL_BENCH_DATABASE_URL",
                                                  "postgresql://postgres@127.0.0.1:5432/pal_bench_gq")
os.environ["BENCH_REDIS_URL"] = os.environ.get("GQL_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

PALS, JOINS, MEETINGS = 100, 5, 5
QUERY = """query { pals(first: 100) { nodes { palId palName
  joins(first: 3, upcoming: true) { nodes { id status joinAt meeting { summary } } }
  meetings(first: 3) { nodes { eventId summary decision platform } } } } }"""


async def seed() -> str:
    from datetime import datetime, timedelta, timezone

    from app import db
    from app.services.accounts import create_account
    from app.tables import CalendarEvent, Join, Pal

    await db.engine().run_ddl("TRUNCATE accounts, pals, calendar_events, joins RESTART IDENTITY CASCADE")
    account, key = await create_account("graphql lists bench")
    now = datetime.now(timezone.utc)
    rows = await Pal.insert(*[Pal(pal_id=f"pbench{n:06d}", account=account.id, pal_name=f"PAL {n}", created_at=now,
                                  updated_at=now) for n in range(PALS)]).returning(Pal.id)
    await Join.insert(*[Join(pal=r["id"], recurrence_id="", meeting_url="https://meet.google.com/abc-defg-hij",
                             start_at=now + timedelta(hours=j + 1), end_at=now + timedelta(hours=j + 2),
                             join_at=now + timedelta(hours=j + 1, minutes=-1), status="scheduled", plan_version=1,
                             created_at=now, updated_at=now) for r in rows for j in range(JOINS)])
    await CalendarEvent.insert(*[CalendarEvent(pal=r["id"], uid=f"{r['id']}-{m}@bench", organizer="a@b.c",
                                               summary=f"Sync {m}", decision="accepted", platform="google_meet",
                                               created_at=now, updated_at=now) for r in rows for m in range(MEETINGS)])
    return key


def count_statements(sent: list[str]):  # type: ignore[no-untyped-def]
    import asyncpg

    original = asyncpg.connection.Connection.fetch

    async def fetch(self, query, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not query.startswith("SELECT pg_advisory_unlock_all();"):
            sent.append(query)
        return await original(self, query, *args, **kwargs)
    asyncpg.connection.Connection.fetch = fetch


async def amain(args: argparse.Namespace) -> None:
    import httpx

    from app import db
    from app.asgi import create_app
    from app.graphql import loaders

    await db.open_pool(min_size=2, max_size=10)
    key = await seed()
    app = create_app(manage_pool=False)
    sent: list[str] = []
    count_statements(sent)
    batched = loaders.DataLoader
    rows = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as http:
        for name, batch_size in (("DataLoaders (batched)", None), ("batching off (max_batch_size=1)", 1)):
            loaders.DataLoader = (batched if batch_size is None else  # type: ignore[misc]
                                  lambda load_fn, cache, _b=batch_size: batched(load_fn=load_fn, cache=cache,
                                                                                max_batch_size=_b))
            for _ in range(3):  # warm-up (also fills the auth cache)
                body = (await http.post("/graphql", json={"query": QUERY}, headers={"x-api-key": key})).json()
                assert "errors" not in body and len(body["data"]["pals"]["nodes"]) == PALS, body
            times = []
            sent.clear()
            for _ in range(args.runs):
                started = time.perf_counter()
                await http.post("/graphql", json={"query": QUERY}, headers={"x-api-key": key})
                times.append((time.perf_counter() - started) * 1000)
            rows.append([name, round(len(sent) / args.runs, 1), statistics.median(times), C.percentile(times, 95)])
    loaders.DataLoader = batched  # type: ignore[misc]
    await db.close_pool()
    print(f"\n{C.machine()}; {C.today()}; {PALS} PALs x ({JOINS} joins, {MEETINGS} meetings), {args.runs} runs\n")
    print(C.md_table(["variant", "SQL statements / request", "p50 ms", "p95 ms"], rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30)
    C.run_bench(amain, parser.parse_args())


if __name__ == "__main__":
    main()
