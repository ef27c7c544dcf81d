"""Benchmark the meet bot against the local Meet look-alike.

Prints, for N = 1, 2, 4, 8 concurrent bots in a call: peak memory per bot (PSS and RSS of each
Chromium's whole process tree, from /proc), seconds from job start to "asked to join", CPU
use, and whether all N made it. Stops escalating when a bot fails, joining gets slow, or free
memory runs low. The look-alike sends no WebRTC, so real Meet costs more CPU (video encode and
decode) than shown here; memory is close to a real call's lower bound.

    .venv/bin/python bench/bot_bench.py [--start 1] [--max 8] [--hold 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _common as C  # noqa: E402
from app.media import ensure_face_media  # noqa: E402
from tests.meet_lookalike import MeetLookalike  # noqa: E402
from workers.meet_bot import BotResult, BotSettings, BotSlots, parse_browser_args, procs, run_meet_bot  # noqa: E402

PROFILE_PREFIX = "pal-meet-bot-"
SLOW_JOIN_S = 45.0
MIN_FREE_FRACTION = 0.2


def meminfo() -> dict[str, int]:
    out = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        k, v = line.split(":", 1)
        out[k] = int(v.split()[0])
    return out


def bot_trees() -> list[list[int]]:
    """Each bot Chromium's process tree (main process found by its profile dir, no --type=)."""
    trees = []
    for pid in procs.pids_with_arg(PROFILE_PREFIX):
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        # Chromium's helpers rewrite argv into one string, so search the raw bytes.
        if b"--type=" not in raw:
            trees.append(procs.descendants(pid))
    return trees




async def round_of(n: int, server: MeetLookalike, media, hold: float) -> dict[str, float] | None:  # type: ignore[no-untyped-def]
    settings = BotSettings(extra_args=parse_browser_args(server.browser_args_env()), waiting_room_timeout=60,
                           alone_grace=600, poll_interval=0.5, prejoin_timeout=60)
    stop = asyncio.Event()
    slots = BotSlots(n)
    in_call = 0
    all_in = asyncio.Event()
    codes = [C.meet_code() for _ in range(n)]

    async def one(c: str) -> tuple[BotResult, float]:
        nonlocal in_call
        url = server.configure(c, "stay", admit_after=0.5)

        async def on_status(status: str, _: str | None) -> None:
            nonlocal in_call
            if status == "in_call":
                in_call += 1
                if in_call == n:
                    all_in.set()

        async with slots:
            t0 = time.time()
            res = await run_meet_bot(url, "Bench PAL", media, settings, on_status=on_status, stop=stop)
            return res, t0

    tasks = [asyncio.create_task(one(c)) for c in codes]
    started = time.time()
    peak_pss = peak_rss = 0
    peak_per_bot_pss = 0
    cpu_pct = 0.0
    try:
        await asyncio.wait_for(all_in.wait(), SLOW_JOIN_S + 30)
        # Let media and page settle, then sample memory and CPU while the bots sit in the call.
        await asyncio.sleep(2)
        trees = bot_trees()
        flat = [p for t in trees for p in t]
        ticks0, t0 = C.cpu_ticks(flat), time.time()
        end = time.time() + hold
        while time.time() < end:
            trees = bot_trees()
            per = [procs.memory_kib(t) for t in trees]
            peak_pss = max(peak_pss, sum(p for p, _ in per))
            peak_rss = max(peak_rss, sum(r for _, r in per))
            peak_per_bot_pss = max([peak_per_bot_pss, *(p for p, _ in per)])
            await asyncio.sleep(0.5)
        trees = bot_trees()
        flat = [p for t in trees for p in t]
        cpu_pct = 100 * (C.cpu_ticks(flat) - ticks0) / os.sysconf("SC_CLK_TCK") / (time.time() - t0)
        free = meminfo()["MemAvailable"] / meminfo()["MemTotal"]
    except asyncio.TimeoutError:
        print(f"N={n}: not all bots reached the call within {SLOW_JOIN_S + 30:.0f}s")
        free = 0.0
    finally:
        stop.set()
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    asked = [server.record(c).join_clicked_at for c in codes]
    join_s = [a - started for a in asked if a is not None]
    ok = sum(1 for o in outcomes if isinstance(o, tuple) and o[0] == BotResult("left", "stopped"))
    row = {
        "n": n, "ok": ok,
        "pss_per_bot_mib": peak_pss / max(n, 1) / 1024, "rss_per_bot_mib": peak_rss / max(n, 1) / 1024,
        "max_bot_pss_mib": peak_per_bot_pss / 1024, "total_pss_mib": peak_pss / 1024,
        "ask_min_s": min(join_s, default=float("nan")), "ask_max_s": max(join_s, default=float("nan")),
        "cpu_pct": cpu_pct, "free_after": free,
    }
    return row


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", type=int, default=1, help="first N (then doubled)")
    ap.add_argument("--max", type=int, default=8)
    ap.add_argument("--hold", type=float, default=8.0, help="seconds in call while sampling")
    args = ap.parse_args()
    mem = meminfo()
    print(f"host: {os.cpu_count()} CPUs, {mem['MemTotal'] / 1024 / 1024:.1f} GiB RAM; chromium via nodriver, "
          f"headless, look-alike (no WebRTC)")
    media = ensure_face_media("bench-face", "Bench", "en-us", Path(tempfile.gettempdir()) / "pal-face-media-bench")
    server = MeetLookalike().start()
    print(f"{'N':>3} {'ok':>3} {'PSS/bot MiB':>12} {'RSS/bot MiB':>12} {'max bot PSS':>12} {'total PSS':>10} "
          f"{'ask-to-join s (min..max)':>25} {'CPU %':>7} {'mem free':>8}")
    held = 0
    try:
        n = max(1, args.start)
        while n <= args.max:
            row = await round_of(n, server, media, args.hold)
            if row is None:
                break
            print(f"{row['n']:>3} {row['ok']:>3} {row['pss_per_bot_mib']:>12.0f} {row['rss_per_bot_mib']:>12.0f} "
                  f"{row['max_bot_pss_mib']:>12.0f} {row['total_pss_mib']:>10.0f} "
                  f"{row['ask_min_s']:>11.1f} .. {row['ask_max_s']:<11.1f} {row['cpu_pct']:>7.0f} "
                  f"{row['free_after']:>8.0%}", flush=True)
            if row["ok"] < n:
                print(f"stopping: only {row['ok']}/{n} bots joined and left cleanly")
                break
            held = n
            if row["ask_max_s"] > SLOW_JOIN_S or row["free_after"] < MIN_FREE_FRACTION:
                print("stopping: joining too slow or memory low")
                break
            n *= 2
    finally:
        server.stop()
    print(f"held concurrently: {held} bots in call (tested up to {args.max})")


if __name__ == "__main__":
    asyncio.run(main())
