"""GET /metrics (and /healthz) for the processes that have no HTTP server: the worker and SMTP.

A few lines of HTTP/1.1 on asyncio in the process's own event loop, rather than
prometheus-client's threaded `start_http_server`: that one has no bearer-token check
(METRICS_TOKEN) and no bound on a slow client. Here a request's head must arrive within
HEAD_TIMEOUT_SECONDS and fit in MAX_HEAD_BYTES, at most MAX_CONNECTIONS are served at
once (more are closed unanswered), and every answer closes the connection. Only GET and
HEAD of /metrics and /healthz exist; no body is ever read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from app import metrics
from app.config import get_settings

log = logging.getLogger(__name__)
HEAD_TIMEOUT_SECONDS = 5.0
MAX_HEAD_BYTES = 8192
MAX_CONNECTIONS = 16
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed"}


def _response(status: int, body: bytes, content_type: str = "text/plain; charset=utf-8", *,
              head: bool = False, extra: str = "") -> bytes:
    lines = (f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {content_type}\r\n"
             f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n")
    return lines.encode("ascii") + (b"" if head else body)


def answer(head: bytes) -> bytes:
    """The whole response to one request head (request line and headers, without the blank line)."""
    try:
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, target, _version = request_line.split(" ")
    except ValueError:
        return _response(400, b"bad request\n")
    headers = {}
    for line in header_lines:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    path = target.split("?", 1)[0]
    if path not in ("/metrics", "/healthz"):
        return _response(404, b"not found\n")
    if method not in ("GET", "HEAD"):
        return _response(405, b"method not allowed\n", extra="Allow: GET, HEAD\r\n")
    if path == "/healthz":
        return _response(200, b"ok\n", head=method == "HEAD")
    if not metrics.authorized(headers.get("authorization")):
        return _response(401, b"a valid METRICS_TOKEN bearer token is required\n",
                         extra='WWW-Authenticate: Bearer realm="metrics"\r\n')
    return _response(200, metrics.render(), metrics.CONTENT_TYPE, head=method == "HEAD")


class MetricsServer:
    """The listener; `port` is the one it bound (useful with port 0)."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.open = 0

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def start(self, host: str, port: int) -> "MetricsServer":
        self.server = await asyncio.start_server(self._serve, host=host, port=port, limit=MAX_HEAD_BYTES)
        return self

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.open >= MAX_CONNECTIONS:
            writer.close()
            return
        self.open += 1
        try:
            try:
                async with asyncio.timeout(HEAD_TIMEOUT_SECONDS):
                    head = await reader.readuntil(b"\r\n\r\n")
            except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return  # too slow, too big or gone: no answer
            writer.write(answer(head[:-4]))
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            self.open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


async def serve_process_metrics(process: str, port: int) -> MetricsServer | None:
    """Start this process's metrics listener on METRICS_HOST:`port`; None when `port` is 0
    or taken (the process runs on without metrics, and says so once)."""
    if not port:
        return None
    host = get_settings().metrics_host
    try:
        server = await MetricsServer().start(host, port)
    except OSError as exc:
        log.warning("%s: metrics not served on %s:%s (%s); set its *_METRICS_PORT to a free port",
                    process, host, port, exc)
        return None
    log.info("%s: metrics on http://%s:%s/metrics", process, host, server.port)
    return server
