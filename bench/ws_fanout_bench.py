"""Fan-out benchmark: N websocket subscribers of one PAL on one API process.

For N = 1,000 then 10,000 (or --sizes): starts the API under uvicorn on 127.0.0.1,
opens N graphql-transport-ws connections (one palEvents subscription each) from a
few client processes, then publishes events on the PAL's Redis channel exactly as
record_event does and measures, per subscriber, publish -> `next` received.
Prints fan-out latency p50/p99/max and the API process's RSS per subscriber.

Loopback only, bounded (--timeout), stops by itself. Uses BENCH_DATABASE_URL and
BENCH_REDIS_URL if set, else the database pal_bench and Redis database 13 on the local servers.

    .venv/bin/python bench/ws_fanout_bench.py [--sizes 1000,10000] [--clients 4] [--events 5] [--deflate]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import _common as C  # noqa: E402  (the benches' shared environment: bench database, loopback only)

SUBSCRIPTION = ("subscription($p: ID!) { palEvents(palId: $p) { __typename "
                "... on PalEvent { id kind payload } } }")


# --- client process ------------------------------------------------------------

async def client_main(url: str, key: str, pal_id: str, count: int, deflate: bool) -> None:
    """Open `count` subscriptions; print 'ready', then one JSON line of latencies per event."""
    from websockets.asyncio.client import connect

    received: dict[int, list[float]] = {}
    gate = asyncio.Semaphore(200)  # concurrent handshakes: keeps the accept backlog sane
    ready = 0
    conns = []

    async def subscriber() -> None:
        nonlocal ready
        async with gate:
            ws = await connect(url, subprotocols=["graphql-transport-ws"], ping_interval=None,
                               compression="deflate" if deflate else None, open_timeout=120, max_queue=64)
            conns.append(ws)
            await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
            await ws.recv()  # ack
            await ws.send(json.dumps({"id": "1", "type": "subscribe",
                                      "payload": {"query": SUBSCRIPTION, "variables": {"p": pal_id}}}))
            await ws.recv()  # the snapshot
        ready += 1
        if ready == count:
            print("ready", flush=True)
        async for raw in ws:
            now = time.time()
            message = json.loads(raw)
            if message.get("type") != "next":
                continue
            payload = message["payload"]["data"]["palEvents"]["payload"]
            got = received.setdefault(payload["seq"], [])
            got.append(now - payload["t0"])
            if len(got) == count:
                print(json.dumps({"seq": payload["seq"], "latencies": got}), flush=True)

    tasks = [asyncio.create_task(subscriber()) for _ in range(count)]
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # parent says stop
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


# --- parent --------------------------------------------------------------------

def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def prepare(env: dict[str, str]) -> tuple[str, str, int]:
    """A fresh account and PAL in the bench database: (api key, pal id, pal pk)."""
    os.environ.update(env)
    from app import db
    from app.config import reset_settings

    reset_settings()
    await db.migrate()
    await db.open_pool(min_size=1, max_size=2)
    try:
        from app.services import pals as pal_service
        from app.services.accounts import create_account

        account, key = await create_account("fan-out bench")
        view = await pal_service.create_pal(account.id, {"pal_name": "Bench", "default_face_id": "r90bbd427f71"})
        return key, view["pal_id"], await pal_service.owned_pal_pk(account.id, view["pal_id"])
    finally:
        await db.close_pool()


async def start_api(env: dict[str, str], port: int) -> asyncio.subprocess.Process:
    import httpx

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "uvicorn", "app.asgi:create_app", "--factory", "--host", "127.0.0.1",
        "--port", str(port), "--log-level", "warning", "--backlog", "4096", cwd=ROOT,
        env=dict(env, MAX_SUBSCRIPTIONS_PER_CONNECTION="4",
                 # the clients open up to 200 handshakes at once (more than the default allows)
                 MAX_UNAUTHENTICATED_WEBSOCKETS="1000"))
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return process
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError("API did not start")


async def run_size(n: int, args: argparse.Namespace, env: dict[str, str], key: str, pal_id: str) -> dict:
    from redis.asyncio import from_url

    port = C.free_port()
    api = await start_api(env, port)
    clients: list[asyncio.subprocess.Process] = []
    redis = from_url(env["REDIS_URL"])
    try:
        await asyncio.sleep(1)
        rss_before = rss_mib(api.pid)
        shares = [n // args.clients + (1 if i < n % args.clients else 0) for i in range(args.clients)]
        started = time.monotonic()
        for share in shares:
            clients.append(await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--client", f"ws://127.0.0.1:{port}/graphql", key, pal_id, str(share),
                *(["--deflate"] if args.deflate else []),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, limit=2**26, cwd=ROOT, env=env))
        for client in clients:
            line = await client.stdout.readline()
            if line.strip() != b"ready":
                raise RuntimeError(f"client failed: {line!r}")
        connect_s = time.monotonic() - started
        await asyncio.sleep(2)  # let allocations settle
        rss_after = rss_mib(api.pid)
        all_latencies: list[float] = []
        spans: list[float] = []
        for seq in range(-1, args.events):  # event -1 warms up and is not counted
            event = {"id": 10**9 + seq, "pal_id": pal_id, "kind": "notes_ready", "created_at": "",
                     "payload": {"seq": seq, "t0": time.time()}}
            await redis.publish(f"pal-events:{pal_id}", json.dumps(event))
            latencies: list[float] = []
            for client in clients:
                report = json.loads(await client.stdout.readline())
                assert report["seq"] == seq, report
                latencies.extend(report["latencies"])
            assert len(latencies) == n
            if seq < 0:
                await asyncio.sleep(0.5)
                continue
            all_latencies.extend(latencies)
            spans.append(max(latencies))
            await asyncio.sleep(0.5)
        ordered = sorted(all_latencies)
        return {
            "subscribers": n, "connect_s": connect_s,
            "p50_ms": 1000 * statistics.median(ordered),
            "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
            "last_ms": 1000 * statistics.median(spans),
            "rss_before_mib": rss_before, "rss_after_mib": rss_after,
            "kib_per_subscriber": (rss_after - rss_before) * 1024 / n,
        }
    finally:
        for client in clients:
            if client.returncode is None:
                client.stdin.write(b"stop\n")
                await client.stdin.drain()
        for client in clients:
            try:
                await asyncio.wait_for(client.wait(), 30)
            except TimeoutError:
                client.kill()
        api.terminate()
        await api.wait()
        await redis.aclose()


async def main(args: argparse.Namespace) -> None:
    fds = raise_fd_limit()
    env = C.bench_env()
    key, pal_id, _ = await prepare(env)
    print(f"fd limit {fds}; {os.cpu_count()} CPUs; {args.clients} client processes; "
          f"{args.events} events per size; permessage-deflate {'on' if args.deflate else 'off'}")
    print(f"{'subscribers':>11} {'connect s':>9} {'p50 ms':>8} {'p99 ms':>8} {'all ms':>8} "
          f"{'RSS before':>10} {'RSS after':>10} {'KiB/sub':>8}")
    for n in args.sizes:
        r = await asyncio.wait_for(run_size(n, args, env, key, pal_id), args.timeout)
        print(f"{r['subscribers']:>11,} {r['connect_s']:>9.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f} "
              f"{r['last_ms']:>8.1f} {r['rss_before_mib']:>9.0f}M {r['rss_after_mib']:>9.0f}M "
              f"{r['kib_per_subscriber']:>8.1f}", flush=True)
    print("p50/p99: publish -> `next` received, over all subscribers and events; "
          "all ms: median time until the last subscriber had the event.")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        url, key, pal_id, count = sys.argv[2:6]
        asyncio.run(client_main(url, key, pal_id, int(count), "--deflate" in sys.argv))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 10000])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--events", type=int, default=5)
    parser.add_argument("--deflate", action="store_true", help="negotiate permessage-deflate, as browsers do")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per size")
    asyncio.run(main(parser.parse_args()))
