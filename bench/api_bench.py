"""Read-one-PAL throughput and latency at concurrency 32: GraphQL, REST, and a bare baseline.

Measures, against one existing PAL row in a dedicated database:

  * GraphQL  `query { pal(palId: ...) { ...all scalar fields } }`  (POST /graphql, real app)
  * REST     `GET /v2/pals/{id}`                                   (real app)
  * baseline a bare Litestar handler in this file that reads the same `pals` row through its
             own asyncpg pool (no auth, no ORM), served the same way

Both servers run under uvicorn, one worker, in subprocesses (`python -m app serve`, and this
file with --serve-baseline), listening on 127.0.0.1 only. Load comes from `wrk -t2 -c32`
(falls back to an asyncio/httpx load generator in a separate process when wrk is missing,
which tops out lower). Every target is warmed up first; rounds are interleaved and the median
round is reported. Prints a markdown table for docs/benchmarks.md.

    .venv/bin/python bench/api_bench.py            # 3 rounds x 10 s per target (~2 min)
    .venv/bin/python bench/api_bench.py --quick    # 1 round x 3 s per target

Environment: BENCH_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/pal_bench),
BENCH_REDIS_URL (default redis://127.0.0.1:6379/13). Both must be loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

PAL_COLUMNS = ("pal_id, pal_name, system_prompt, pipeline_mode, default_face_id, layers, username, "
               "email_domain, created_at, updated_at")
GRAPHQL_QUERY = ("query Pal($id: ID!) { pal(palId: $id) { palId palName systemPrompt pipelineMode "
                 "defaultFaceId layers conferencingEmail createdAt updatedAt } }")
PAL_DOC = {
    "pal_name": "Bench",
    "system_prompt": "You are Bench, a meeting assistant who takes notes and answers questions.",
    "pipeline_mode": "full",
    "default_face_id": "r90bbd427f71",
    "layers": {"conferencing": {"username": "", "allowlist": ["alex@acme.com", ".*@acme\\.com"]}},
}


# --- the baseline app (runs in its own process under uvicorn) --------------------------------

def create_baseline_app():  # type: ignore[no-untyped-def]
    """A bare Litestar app: one GET handler, one asyncpg pool, one SELECT of the pals row."""
    import asyncpg
    from litestar import Litestar, get
    from litestar.exceptions import NotFoundException

    state: dict[str, asyncpg.Pool] = {}
    sql = f"SELECT {PAL_COLUMNS} FROM pals WHERE pal_id = $1"

    @get("/pals/{pal_id:str}")
    async def read_pal(pal_id: str) -> dict:
        async with state["pool"].acquire() as conn:
            row = await conn.fetchrow(sql, pal_id)
        if row is None:
            raise NotFoundException()
        out = dict(row)
        out["layers"] = json.loads(out["layers"])
        return out

    @get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok"}

    async def open_pool() -> None:
        # Same pool size as the app's (app.db.open_pool: min 2, max 10). asyncpg's defaults, unless
        # BASELINE_KEEP_SESSION=1: then, like the app, no reset query on release (app/db.py).
        extra = {"reset": _keep_session} if os.environ.get("BASELINE_KEEP_SESSION") == "1" else {}
        state["pool"] = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=2, max_size=int(os.environ.get("BASELINE_POOL_MAX", "10")), **extra)

    async def close_pool() -> None:
        await state["pool"].close()

    return Litestar(route_handlers=[read_pal, healthz], on_startup=[open_pool], on_shutdown=[close_pool])


async def _keep_session(connection: object) -> None:
    """The app's pool reset (app/db.py): asyncpg's rollback only, no reset query."""


def serve_baseline(port: int) -> None:
    import uvicorn

    # Exactly how `python -m app serve` runs the real app (uvicorn defaults: uvloop, httptools, access log).
    uvicorn.run("api_bench:create_baseline_app", factory=True, host=C.HOST, port=port)


# --- load generation ------------------------------------------------------------------------

WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_JSON {\"requests\":%d,\"duration_us\":%d,\"status_errors\":%d,\"socket_errors\":%d," ..
    "\"p50_us\":%d,\"p90_us\":%d,\"p99_us\":%d,\"max_us\":%d}\n",
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


def wrk_script(method: str, headers: dict[str, str], body: str | None) -> Path:
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if body is not None:
        lines.append(f"wrk.body = [==[{body}]==]")
    path = C.log_dir() / f"wrk-{uuid.uuid4().hex[:8]}.lua"
    path.write_text("\n".join(lines) + "\n" + WRK_DONE)
    return path


class Target:
    def __init__(self, name: str, url: str, method: str = "GET", headers: dict[str, str] | None = None,
                 body: str | None = None, server_pid: int = 0):
        self.name, self.url, self.method, self.headers, self.body = name, url, method, headers or {}, body
        self.server_pid = server_pid
        self.script = wrk_script(method, self.headers, body)


def run_wrk(t: Target, seconds: float, conns: int, threads: int) -> dict:
    argv = ["wrk", f"-t{threads}", f"-c{conns}", f"-d{max(int(round(seconds)), 1)}s", "--timeout", "10s",
            "-s", str(t.script), t.url]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    for line in out.stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            r = json.loads(line[len("BENCH_JSON "):])
            return {"requests": r["requests"], "seconds": r["duration_us"] / 1e6,
                    "errors": r["status_errors"] + r["socket_errors"],
                    "p50_ms": r["p50_us"] / 1000, "p90_ms": r["p90_us"] / 1000, "p99_ms": r["p99_us"] / 1000,
                    "max_ms": r["max_us"] / 1000}
    raise SystemExit(f"wrk gave no result for {t.name}:\n{out.stdout}\n{out.stderr}")


async def _loadgen(url: str, method: str, headers: dict[str, str], body: str | None, seconds: float,
                   conns: int) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=conns, max_keepalive_connections=conns)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
        deadline = time.perf_counter() + seconds

        async def one() -> None:
            nonlocal errors
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    r = await client.request(method, url, headers=headers, content=body)
                    ok = r.status_code < 400
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - t0)
                errors += not ok

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(conns)))
        elapsed = time.perf_counter() - start
    ms = [x * 1000 for x in latencies]
    return {"requests": len(ms), "seconds": elapsed, "errors": errors, "p50_ms": C.percentile(ms, 50),
            "p90_ms": C.percentile(ms, 90), "p99_ms": C.percentile(ms, 99), "max_ms": max(ms, default=0)}


def run_pygen(t: Target, seconds: float, conns: int) -> dict:
    spec = json.dumps({"url": t.url, "method": t.method, "headers": t.headers, "body": t.body,
                       "seconds": seconds, "conns": conns})
    out = subprocess.run([C.PY, __file__, "--loadgen", spec], capture_output=True, text=True,
                         timeout=seconds + 60)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the run ----------------------------------------------------------------------------------

def setup(api_port: int) -> tuple[str, str]:
    """An account (via the CLI) and a PAL (via REST); returns (api_key, pal_id)."""
    import httpx

    out = subprocess.run([C.PY, "-m", "app", "create-account", "bench-api"], cwd=C.ROOT, env=C.bench_env(),
                         capture_output=True, text=True, check=True, timeout=120)
    key = out.stdout.strip().splitlines()[-1]
    doc = json.loads(json.dumps(PAL_DOC))
    doc["layers"]["conferencing"]["username"] = f"bench-{uuid.uuid4().hex[:10]}"
    r = httpx.post(f"http://{C.HOST}:{api_port}/v2/pals", json=doc, headers={"x-api-key": key}, timeout=30)
    r.raise_for_status()
    return key, r.json()["pal_id"]


def check(t: Target, pal_id: str) -> None:
    import httpx

    r = httpx.request(t.method, t.url, headers=t.headers, content=t.body, timeout=30)
    if r.status_code != 200 or pal_id not in r.text or '"errors"' in r.text:
        raise SystemExit(f"{t.name}: unexpected answer {r.status_code}: {r.text[:500]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round of 3 s per target, 1 s warm-up")
    ap.add_argument("--seconds", type=float, help="measured seconds per target per round (default 10)")
    ap.add_argument("--rounds", type=int, help="interleaved rounds; the median is reported (default 3)")
    ap.add_argument("--warmup", type=float, help="warm-up seconds per target (default 3)")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--wait-quiet", type=float, default=60,
                    help="before each measurement wait up to this many seconds for the machine to be idle (0: don't)")
    ap.add_argument("--python-loadgen", action="store_true", help="use the httpx load generator even if wrk exists")
    ap.add_argument("--serve-baseline", type=int, metavar="PORT", help=argparse.SUPPRESS)
    ap.add_argument("--loadgen", metavar="JSON", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.serve_baseline:
        serve_baseline(args.serve_baseline)
        return
    if args.loadgen:
        s = json.loads(args.loadgen)
        print(json.dumps(asyncio.run(_loadgen(s["url"], s["method"], s["headers"], s["body"], s["seconds"],
                                              s["conns"]))))
        return

    seconds = args.seconds or (3 if args.quick else 10)
    rounds = args.rounds or (1 if args.quick else 3)
    warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    use_wrk = shutil.which("wrk") is not None and not args.python_loadgen
    tool = f"wrk -t{args.threads} -c{args.connections}" if use_wrk else f"httpx load generator, {args.connections} connections"
    print(f"# api_bench: {tool}, {rounds} round(s) x {seconds:g} s per target, warm-up {warmup:g} s", flush=True)

    C.install_cleanup()
    C.single_instance(C.BENCH_DATABASE_URL, C.BENCH_REDIS_URL)
    C.migrate()
    api_port, base_port = C.free_port(), C.free_port()
    api = C.start("api", [C.PY, "-m", "app", "serve"], C.bench_env(API_PORT=str(api_port)))
    base = C.start("baseline", [C.PY, __file__, "--serve-baseline", str(base_port)], C.bench_env())
    kept_port = C.free_port()
    kept = C.start("baseline-kept", [C.PY, __file__, "--serve-baseline", str(kept_port)],
                   C.bench_env(BASELINE_KEEP_SESSION="1"))
    C.wait_port(api_port, api)
    C.wait_port(base_port, base)
    C.wait_port(kept_port, kept)
    key, pal_id = setup(api_port)
    print(f"# logs in {C.log_dir()}; PAL {pal_id}", flush=True)

    body = json.dumps({"query": GRAPHQL_QUERY, "variables": {"id": pal_id}, "operationName": "Pal"})
    targets = [
        Target("baseline: bare Litestar + asyncpg", f"http://{C.HOST}:{base_port}/pals/{pal_id}", server_pid=base.pid),
        Target("baseline without the pool's reset query (as the app)", f"http://{C.HOST}:{kept_port}/pals/{pal_id}",
               server_pid=kept.pid),
        Target("REST GET /v2/pals/{id}", f"http://{C.HOST}:{api_port}/v2/pals/{pal_id}",
               headers={"x-api-key": key}, server_pid=api.pid),
        Target("GraphQL pal(palId)", f"http://{C.HOST}:{api_port}/graphql", method="POST",
               headers={"x-api-key": key, "content-type": "application/json"}, body=body, server_pid=api.pid),
    ]
    for t in targets:
        check(t, pal_id)

    db_name = C.BENCH_DATABASE_URL.rsplit("/", 1)[-1]

    def load(t: Target, secs: float, measured: bool = True) -> dict:
        if measured and args.wait_quiet > 0:
            busy = C.wait_quiet(args.wait_quiet)
            if busy > 0.3:
                print(f"# warning: machine busy ({busy:.2f} cores) before {t.name}; figures may be low", flush=True)
        meter = C.CpuMeter({
            "server": C.pid_cpu(t.server_pid),
            "postgres": lambda: C.cpu_by_comm("postgres", cmdline_has=f" {db_name} "),
            # wrk (or the python generator) is our child and is reaped by subprocess.run: its CPU
            # shows up in RUSAGE_CHILDREN once it has exited.
            "loadgen": C.children_cpu,
        })
        meter.start()
        r = run_wrk(t, secs, args.connections, args.threads) if use_wrk else run_pygen(t, secs, args.connections)
        used = meter.stop()
        r["rps"] = r["requests"] / r["seconds"]
        n = max(r["requests"], 1)
        r["server_cpu_ms"] = used["server"] * 1000 / n
        r["pg_cpu_ms"] = used["postgres"] * 1000 / n
        r["server_cpu_util"] = used["server"] / used["_wall"]
        r["loadgen_util"] = used["loadgen"] / used["_wall"]
        r["other_util"] = used["other"] / used["_wall"]
        return r

    for t in targets:  # warm-up: pools, caches and connections fill
        load(t, warmup, measured=False)
    results: dict[str, list[dict]] = {t.name: [] for t in targets}
    for i in range(rounds):
        for t in targets:
            r = load(t, seconds)
            results[t.name].append(r)
            print(f"# round {i + 1} {t.name}: {r['rps']:,.0f} req/s, p50 {r['p50_ms']:.2f} ms, "
                  f"p99 {r['p99_ms']:.2f} ms, errors {r['errors']}; CPU: server {r['server_cpu_util']:.0%}, "
                  f"wrk {r['loadgen_util']:.0%}, other {r['other_util']:.2f} cores",
                  flush=True)
    for t in targets:
        check(t, pal_id)

    def med(name: str, field: str) -> float:
        # On a shared machine, rounds where other processes used > 0.5 cores are left out (unless all were).
        clean = [r for r in results[name] if r["other_util"] <= 0.5] or results[name]
        return statistics.median(r[field] for r in clean)

    base_name = targets[0].name
    b_rps, b_p99 = med(base_name, "rps"), med(base_name, "p99_ms")
    rows = []
    for t in targets:
        rps, p50, p99 = med(t.name, "rps"), med(t.name, "p50_ms"), med(t.name, "p99_ms")
        errors = sum(r["errors"] for r in results[t.name])
        rows.append([t.name, f"{rps:,.0f}", f"{p50:.1f}", f"{p99:.1f}",
                     "1.00" if t.name == base_name else f"{rps / b_rps:.2f}",
                     "1.00" if t.name == base_name else f"{p99 / b_p99:.2f}",
                     f"{med(t.name, 'server_cpu_ms'):.2f}", f"{med(t.name, 'pg_cpu_ms'):.2f}",
                     f"{med(t.name, 'other_util'):.2f}", errors])
    print()
    print(f"### Read one PAL at concurrency {args.connections} ({C.today()})")
    print()
    print(f"Machine: {C.machine()}. Load: {tool}, {rounds} x {seconds:g} s per target after {warmup:g} s warm-up, "
          "median of the rounds in which other processes used <= 0.5 cores; servers: uvicorn, 1 worker, defaults (uvloop, httptools, access log on); "
          "PostgreSQL and the load generator share the same cores.")
    print()
    print(C.md_table(["endpoint", "req/s", "p50 ms", "p99 ms", "throughput vs baseline", "p99 vs baseline",
                      "server CPU ms/req", "PostgreSQL CPU ms/req",
                      "other CPU, cores", "errors"], rows))
    print()
    for t in targets[1:]:
        print(f"- {t.name}: {med(t.name, 'rps') / b_rps:.2f}x the baseline's throughput, "
              f"{med(t.name, 'p99_ms') / b_p99:.2f}x its p99 latency.")
    kept_rps = med(targets[1].name, "rps")
    for t in targets[2:]:
        print(f"- {t.name}: {med(t.name, 'rps') / kept_rps:.2f}x the throughput of the baseline without the reset "
              f"query; by server CPU per request {med(targets[1].name, 'server_cpu_ms') / med(t.name, 'server_cpu_ms'):.2f}x.")
    C.stop_all()


if __name__ == "__main__":
    main()
