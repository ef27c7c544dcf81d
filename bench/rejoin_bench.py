"""How long a PAL is out of its meeting when its worker is killed (kill -9) mid-call.

Runs the real stack on 127.0.0.1 as production does: `python -m app run` (API, worker, SMTP;
the supervisor restarts a worker that dies) with the bot pointed at the Meet look-alike, which
this process serves. Each round sends a PAL into a look-alike meeting (a conversation), waits
until it is in the call, holds it there a random 2-5 s (so the kill lands anywhere in the
lease renewal cycle), then SIGKILLs the worker process. The supervisor starts a new worker,
whose start-up kills the orphaned Chromium; the bot's lease expires, the recovery cron
re-dispatches the join, and a bot joins again. Timed from the kill (PostgreSQL and Redis
polled every 50 ms):

    lease gone     the dead bot's lease (bot-lease:<id>) expired
    redispatched   recovery put the join back to scheduled (plan_version + 1)
    claimed        a worker claimed it (dispatching)
    back in call   the new bot is in the call (in_call, new plan_version): the figure

and after each round, how many bot browsers are in the meeting (must be 1). Then the
conversation is ended and the next round starts.

    .venv/bin/python bench/rejoin_bench.py [--rounds 5]

The bench database (BENCH_DATABASE_URL, default postgresql://postgres@127.0.0.1:5432/pal_bench)
gains an account and joins; Redis db 13 (BENCH_REDIS_URL) is flushed at start.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import statistics
import string
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

JOIN_TIMEOUT = 90.0


def now() -> datetime:
    return datetime.now(timezone.utc)


def code() -> str:
    p = lambda n: "".join(random.choice(string.ascii_lowercase) for _ in range(n))  # noqa: E731
    return f"{p(3)}-{p(4)}-{p(3)}"


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def worker_pid(run_pid: int) -> int | None:
    """The worker child of the supervisor (`python -m app worker` execs `python -m workers`)."""
    from workers.meet_bot.procs import descendants

    for pid in descendants(run_pid):
        cmd = cmdline(pid)
        if cmd.endswith(b"-m\x00workers\x00") or b"-m\x00app\x00worker\x00" in cmd:
            return pid
    return None


def bot_browsers() -> list[int]:
    """Every bot Chromium main process on this host (profile dir pal-meet-bot-*, no --type=)."""
    from workers.meet_bot.procs import pids_with_arg

    return [p for p in pids_with_arg("pal-meet-bot-") if b"--type=" not in cmdline(p)]


async def wait_for(join_pk: int, test, timeout: float = JOIN_TIMEOUT) -> dict:  # type: ignore[no-untyped-def]
    from app.tables import Join

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await Join.select().where(Join.id == join_pk).first()
        if test(row):
            return row
        await asyncio.sleep(0.05)
    raise SystemExit(f"join {join_pk} stuck at {row['status']} v{row['plan_version']} ({row['reason']})")


async def one_round(n: int, run_pid: int, server, account_id: int, pal_id: str) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from app.keys import bot_lease_key
    from app.redis_client import redis
    from app.services.conversations import create_conversation, end_conversation
    from app.tables import Join

    url = server.configure(code(), "stay", admit_after=0.3)
    conversation = await create_conversation(account_id, {"pal_id": pal_id, "meeting_url": url}, now=now())
    join_pk = conversation["join_id"]
    joined = await wait_for(join_pk, lambda r: r["status"] == "in_call")
    version = joined["plan_version"]
    await asyncio.sleep(random.uniform(2, 5))
    pid = worker_pid(run_pid)
    if pid is None:
        raise SystemExit("no worker process under `python -m app run`")
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    marks: dict[str, float] = {}
    while "back in call" not in marks:
        if time.monotonic() - killed > JOIN_TIMEOUT:
            raise SystemExit(f"round {n}: not back in the call {JOIN_TIMEOUT:.0f} s after the kill")
        row = await Join.select(Join.status, Join.plan_version).where(Join.id == join_pk).first()
        t = time.monotonic() - killed
        if "lease gone" not in marks and not await redis().exists(bot_lease_key(join_pk)):
            marks["lease gone"] = t
        if row["plan_version"] > version:
            marks.setdefault("redispatched", t)
            if row["status"] != "scheduled":
                marks.setdefault("claimed", t)
            if row["status"] == "in_call":
                marks["back in call"] = t
        await asyncio.sleep(0.05)
    await asyncio.sleep(2)  # a second bot, if any, would be up by now
    marks["bots in meeting"] = len(bot_browsers())
    await end_conversation(account_id, conversation["conversation_id"], now=now())
    await wait_for(join_pk, lambda r: r["status"] in ("left", "failed"), timeout=30)
    return marks


async def amain(args: argparse.Namespace) -> None:
    import redis.asyncio as aioredis

    from app import db
    from app.services import pals as pal_service
    from app.services.accounts import create_account
    from app.services.faces import seed_stock_faces
    from tests.meet_lookalike import MeetLookalike

    r = aioredis.from_url(C.BENCH_REDIS_URL)
    await r.flushdb()
    await r.aclose()
    await db.open_pool(min_size=1, max_size=4)
    await seed_stock_faces()
    account, _ = await create_account("bench-rejoin")
    pal = await pal_service.create_pal(account.id, {"pal_name": "Bench", "default_face_id": "r90bbd427f71"})
    server = MeetLookalike().start()
    env = C.bench_env(
        API_PORT=str(C.free_port()), SMTP_PORT=str(C.free_port()),
        SMTP_RELAY_URL=f"smtp://{C.HOST}:{C.free_port()}",  # nothing is mailed; no dev mail sink either
        BOT_BROWSER_ARGS=server.browser_args_env(), MEDIA_DIR=tempfile.mkdtemp(prefix="pal-bench-media-"),
        LOG_LEVEL="WARNING",
    )
    stack = C.start("app-run", [C.PY, "-m", "app", "run"], env)
    print(f"machine: {C.machine()}\ndate: {C.today()}\n`python -m app run` + Meet look-alike; "
          f"{args.rounds} rounds of kill -9 of the worker while its bot is in the call\n", flush=True)
    rows = []
    try:
        for n in range(1, args.rounds + 1):
            marks = await one_round(n, stack.pid, server, account.id, pal["pal_id"])
            rows.append(marks)
            print(f"round {n}: " + ", ".join(f"{k} {v:.1f} s" if k != "bots in meeting" else f"{k}: {v:.0f}"
                                              for k, v in marks.items()), flush=True)
    finally:
        C.stop(stack, timeout=30)
        server.stop()
        await db.close_pool()
    keys = ["lease gone", "redispatched", "claimed", "back in call"]
    print()
    print(C.md_table(["kill →", "median s", "min s", "max s"],
                     [[k, statistics.median(r[k] for r in rows), min(r[k] for r in rows), max(r[k] for r in rows)]
                      for k in keys]))
    print(f"\nbots in the meeting after each round: {[int(r['bots in meeting']) for r in rows]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    C.run_bench(amain, ap.parse_args())


if __name__ == "__main__":
    main()
