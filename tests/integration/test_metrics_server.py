"""The worker's and SMTP server's metrics listener (app/metrics_server.py), over real loopback TCP."""

from __future__ import annotations

import asyncio
import socket

import pytest

from app import metrics_server
from app.config import reset_settings
from app.metrics_server import MetricsServer, serve_process_metrics
from tests.scrape import Scrape


@pytest.fixture
async def server(monkeypatch):
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    reset_settings()
    listener = await MetricsServer().start("127.0.0.1", 0)
    yield listener
    await listener.close()
    reset_settings()


async def exchange(port: int, request: bytes, timeout: float = 5) -> bytes:
    """Send `request` and read until the server closes: the whole answer (b"" for none)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(timeout):
            return await reader.read()
    except ConnectionResetError:  # closed before reading what we sent: no answer either
        return b""
    finally:
        writer.close()


def split(answer: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split(" ")[1]), headers, body


async def test_metrics_healthz_and_nothing_else(server):
    status, headers, body = split(await exchange(server.port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"))
    assert status == 200 and headers["content-type"].startswith("text/plain; version=")
    assert int(headers["content-length"]) == len(body) and headers["connection"] == "close"
    assert Scrape(body.decode()).has("pal_replies_total", result="sent")
    status, headers, body = split(await exchange(server.port, b"HEAD /metrics HTTP/1.1\r\n\r\n"))
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert split(await exchange(server.port, b"GET /healthz HTTP/1.1\r\n\r\n"))[0] == 200
    assert split(await exchange(server.port, b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"))[0] == 200
    assert split(await exchange(server.port, b"GET /v2/pals HTTP/1.1\r\n\r\n"))[0] == 404
    status, headers, _ = split(await exchange(server.port, b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"))
    assert status == 405 and headers["allow"] == "GET, HEAD"
    assert split(await exchange(server.port, b"nonsense\r\n\r\n"))[0] == 400


async def test_metrics_token(server, monkeypatch):
    monkeypatch.setenv("METRICS_TOKEN", "scrape-me")
    reset_settings()
    for auth in (b"", b"Authorization: Bearer nope\r\n", b"Authorization: scrape-me\r\n"):
        status, headers, _ = split(await exchange(server.port, b"GET /metrics HTTP/1.1\r\n" + auth + b"\r\n"))
        assert status == 401 and headers["www-authenticate"].startswith("Bearer"), auth
    ok = await exchange(server.port, b"GET /metrics HTTP/1.1\r\nauthorization:  Bearer scrape-me\r\n\r\n")
    assert split(ok)[0] == 200
    # Liveness needs no token.
    assert split(await exchange(server.port, b"GET /healthz HTTP/1.1\r\n\r\n"))[0] == 200


async def test_a_slow_or_oversized_request_is_dropped_unanswered(server, monkeypatch):
    monkeypatch.setattr(metrics_server, "HEAD_TIMEOUT_SECONDS", 0.2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await exchange(server.port, b"GET /metrics HTTP/1.1\r\n") == b""  # never finishes its head
    assert loop.time() - started < 2
    huge = b"GET /metrics HTTP/1.1\r\nX-Pad: " + b"a" * (metrics_server.MAX_HEAD_BYTES + 10) + b"\r\n\r\n"
    assert await exchange(server.port, huge) == b""


async def test_connections_beyond_the_cap_are_closed_at_once(server, monkeypatch):
    monkeypatch.setattr(metrics_server, "MAX_CONNECTIONS", 1)
    _, idle = await asyncio.open_connection("127.0.0.1", server.port)  # holds the only slot
    try:
        await asyncio.sleep(0.05)
        assert await exchange(server.port, b"GET /metrics HTTP/1.1\r\n\r\n", timeout=2) == b""
    finally:
        idle.close()
    await asyncio.sleep(0.05)
    assert split(await exchange(server.port, b"GET /healthz HTTP/1.1\r\n\r\n"))[0] == 200  # the slot is back


async def test_port_zero_disables_and_a_taken_port_is_survived(caplog):
    assert await serve_process_metrics("worker", 0) is None
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert await serve_process_metrics("worker", taken.getsockname()[1]) is None
    assert "metrics not served" in caplog.text
