"""What the Prometheus instrumentation costs per API request: the real app with and without it.

The instrumentation of a request is the ASGI timer around the Litestar handler
(app/rest/ops.py HttpMetrics: one histogram observation) and, for GraphQL, the schema
extension (app/graphql/metrics.py: one more). The bench builds the real app twice in this
process, as shipped and with both taken out (the handler unwrapped, the extension left out
of the schema's list), and sends the same requests to each through httpx's ASGI transport
(no sockets: a network round trip's noise would hide microseconds), against the bench
PostgreSQL. Per request it measures this process's CPU time and the wall latency; rounds
alternate the two apps (each target runs in both modes back to back), and the report gives the
median round and the median of the per-round differences. It also times the pieces alone
(one observation, one render of the registry) and a whole GET /metrics (with its PostgreSQL
and Redis reads).

    .venv/bin/python bench/metrics_bench.py            # 24 rounds x 500 requests per target and mode (~3 min)
    .venv/bin/python bench/metrics_bench.py --quick    # 6 rounds x 300

Environment: BENCH_DATABASE_URL / BENCH_REDIS_URL as for every bench (loopback only).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import timeit
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

GRAPHQL = "query Pal($id: ID!) { pal(palId: $id) { palId palName pipelineMode createdAt } }"


async def _round(client, request, count: int) -> tuple[float, list[float]]:
    """CPU µs per request and every request's wall time in µs."""
    walls = []
    cpu0 = time.process_time()
    for _ in range(count):
        started = time.perf_counter()
        response = await request(client)
        walls.append((time.perf_counter() - started) * 1e6)
        assert response.status_code == 200, response.text
    return (time.process_time() - cpu0) * 1e6 / count, walls


async def amain(args: argparse.Namespace) -> None:
    import logging

    import httpx

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a log line per request would be most of the noise

    from app import db, metrics
    from app.asgi import create_app
    from app.graphql.errors import DomainErrors
    from app.graphql.schema import MeteredDomainErrors, schema
    from app.services import pals as pal_service
    from app.services.accounts import create_account

    await db.open_pool(min_size=2, max_size=10)
    account, key = await create_account(f"metrics-bench-{uuid.uuid4().hex[:8]}")
    pal = await pal_service.create_pal(account.id, {"pal_name": "Bench", "default_face_id": "r90bbd427f71"})
    headers = {"x-api-key": key}

    shipped = create_app(manage_pool=False)
    bare = create_app(manage_pool=False)
    bare.asgi_handler = bare.asgi_handler.app  # without the HttpMetrics timer
    with_ext = list(schema.extensions)
    # The timer lives in the error extension's hook: the bare mode keeps the errors, not the timer.
    without_ext = [DomainErrors if e is MeteredDomainErrors else e for e in with_ext]
    assert without_ext != with_ext

    targets = {
        "GET /healthz": lambda c: c.get("/healthz"),
        "REST GET /v2/pals/{id}": lambda c: c.get(f"/v2/pals/{pal['pal_id']}", headers=headers),
        # No database behind it (the key is cached): the GraphQL pipeline's own cost, less noisy.
        "GraphQL { __typename }": lambda c: c.post("/graphql", headers=headers, json={"query": "{ __typename }"}),
        "GraphQL pal(palId)": lambda c: c.post("/graphql", headers=headers,
                                               json={"query": GRAPHQL, "variables": {"id": pal["pal_id"]}}),
    }
    modes = {"instrumented": (shipped, with_ext), "bare": (bare, without_ext)}
    gc.freeze()  # as the API's lifespan does: startup objects out of the collector's view
    results: dict[tuple[str, str], list[tuple[float, list[float]]]] = {}
    clients = {mode: httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench")
               for mode, (app, _) in modes.items()}
    try:
        for name, request in targets.items():  # warm-up: caches, pool, JIT-free but lazy imports
            for mode, (_, extensions) in modes.items():
                schema.extensions = extensions
                await _round(clients[mode], request, 200)
        for n in range(args.rounds):
            order = list(modes) if n % 2 == 0 else list(reversed(modes))
            for name, request in targets.items():
                for mode in order:
                    schema.extensions = modes[mode][1]
                    results.setdefault((name, mode), []).append(await _round(clients[mode], request, args.count))
        scrape_walls = []
        for _ in range(50):
            started = time.perf_counter()
            response = await clients["instrumented"].get("/metrics")
            scrape_walls.append((time.perf_counter() - started) * 1e3)
            assert response.status_code == 200
        scrape_bytes = len(response.content)
        # The extension alone: the schema executing a document without HTTP, auth or database.
        extension_deltas = []
        for n in range(20):
            cpu = {}
            for mode in (("with", "without") if n % 2 == 0 else ("without", "with")):
                schema.extensions = with_ext if mode == "with" else without_ext
                started = time.process_time()
                for _ in range(1000):
                    await schema.execute("{ __typename }")
                cpu[mode] = (time.process_time() - started) * 1e3  # ms per 1000 = µs per operation
            extension_deltas.append(cpu["with"] - cpu["without"])
    finally:
        schema.extensions = with_ext
        for client in clients.values():
            await client.aclose()
        await db.close_pool()

    observe_us = min(timeit.repeat(lambda: metrics.observe_http("GET", "/v2/pals/{pal_id}", 200, 0.001),
                                   number=20000, repeat=5)) / 20000 * 1e6
    render_ms = min(timeit.repeat(metrics.render, number=50, repeat=3)) / 50 * 1e3

    def paired_delta(name: str) -> tuple[float, float, float]:
        """Median and quartiles of (instrumented - bare) CPU per request, round by round:
        the two modes of a round ran back to back, so drift in the machine's load cancels."""
        deltas = sorted(on[0] - off[0] for on, off in zip(results[(name, "instrumented")], results[(name, "bare")]))
        quartiles = statistics.quantiles(deltas, n=4) if len(deltas) > 1 else [deltas[0]] * 3
        return statistics.median(deltas), quartiles[0], quartiles[2]

    def median_round(name: str, mode: str) -> tuple[float, float, float]:
        rounds = results[(name, mode)]
        cpu = statistics.median(r[0] for r in rounds)
        p50 = statistics.median(C.percentile(r[1], 50) for r in rounds)
        p99 = statistics.median(C.percentile(r[1], 99) for r in rounds)
        return cpu, p50, p99

    rows = []
    for name in targets:
        on, off = median_round(name, "instrumented"), median_round(name, "bare")
        delta, q1, q3 = paired_delta(name)
        rows.append([name, f"{off[0]:.0f}", f"{on[0]:.0f}", f"{delta:+.0f} ({q1:+.0f} … {q3:+.0f})",
                     f"{delta / off[0] * 100:+.1f}%", f"{off[1]:.0f} / {on[1]:.0f}",
                     f"{off[2]:.0f} / {on[2]:.0f}"])
    print(f"\n{C.today()} — {C.machine()}")
    print(f"{args.rounds} rounds × {args.count} sequential requests per target and mode, "
          "in process (httpx ASGI transport), median round\n")
    print(C.md_table(["request", "CPU µs/req bare", "instrumented", "Δ µs, paired (quartiles)", "Δ",
                      "wall p50 µs bare / instr.",
                      "wall p99 µs bare / instr."], rows))
    print()
    print(C.md_table(["piece", "cost"], [
        ["one histogram observation (observe_http)", f"{observe_us:.2f} µs"],
        ["the GraphQL extension, per operation (schema.execute, paired median of 20 × 1000)",
         f"{statistics.median(extension_deltas):+.1f} µs"],
        ["render the registry (generate_latest)", f"{render_ms:.2f} ms, {scrape_bytes:,} bytes"],
        ["GET /metrics, PostgreSQL and Redis reads included (p50 / max of 50)",
         f"{statistics.median(scrape_walls):.2f} / {max(scrape_walls):.2f} ms"],
    ]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rounds", type=int, default=24)
    parser.add_argument("--count", type=int, default=500)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.count = 6, 300
    C.run_bench(amain, args)


if __name__ == "__main__":
    main()
