"""A webhook receiver on 127.0.0.1 for tests and benchmarks: a real HTTP/1.1 server that checks
every request's signature with the `standardwebhooks` library and can misbehave on demand.

Modes: "ok" (204), "fail" (500 for the first `fail_first` requests, then 204), "hang" (never
answers), "redirect" (302 to /elsewhere), "huge" (200 with an endless chunked body), "block"
(holds each request until `release` is set).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook, WebhookVerificationError


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    verified: bool
    at: float  # time.monotonic() when the body was in
    wall: float  # time.time() then (benchmarks compare it with another process's clock)

    @property
    def message_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)  # any of them may sign
    mode: str = "ok"
    fail_first: int = 0
    port: int = 0
    host: str = "127.0.0.1"  # the name in url (a TLS receiver's certificate name)
    tls: ssl.SSLContext | None = None
    received: list[Received] = field(default_factory=list)
    huge_bytes_written: int = 0
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    _server: asyncio.base_events.Server | None = None
    _tasks: set[asyncio.Task] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}/hooks"

    def verify(self, body: bytes, headers: dict[str, str]) -> bool:
        for secret in self.secrets:
            try:
                Webhook(secret).verify(body, headers)
                return True
            except WebhookVerificationError:
                continue
        return False

    async def start(self) -> "Receiver":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Handlers end on their own (cancelling them makes asyncio log a traceback)."""
        self.closing.set()
        self.release.set()
        if self._server is not None:
            self._server.close()
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=5)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                line = await self._unless_closing(reader.readline())
                if not line:
                    return
                _, path, _ = line.decode().split(" ", 2)
                headers: dict[str, str] = {}
                while (raw := await reader.readline()) not in (b"\r\n", b""):
                    name, value = raw.decode().split(":", 1)
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.received.append(Received(path, headers, body, self.verify(body, headers), time.monotonic(),
                                              time.time()))
                self.arrived.set()
                if not await self._answer(writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            return
        finally:
            self._tasks.discard(task)
            writer.close()

    async def _unless_closing(self, read) -> bytes:
        """A read that gives b"" once the receiver stops (an idle keep-alive connection ends)."""
        reading = asyncio.ensure_future(read)
        closing = asyncio.ensure_future(self.closing.wait())
        done, _ = await asyncio.wait({reading, closing}, return_when=asyncio.FIRST_COMPLETED)
        if reading in done:
            closing.cancel()
            return reading.result()
        reading.cancel()
        with contextlib.suppress(BaseException):
            await reading
        return b""

    async def _answer(self, writer: asyncio.StreamWriter) -> bool:
        mode = self.mode
        if mode == "fail" and len(self.received) > self.fail_first:
            mode = "ok"
        if mode == "hang":
            await self.closing.wait()
            return False
        if mode == "block":
            await self.release.wait()
            if self.closing.is_set():
                return False
            mode = "ok"
        if mode == "ok":
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
        elif mode == "fail":
            writer.write(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\noops")
        elif mode == "redirect":
            writer.write(b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\ncontent-length: 0\r\n\r\n")
        elif mode == "huge":
            writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
            chunk = b"x" * 65536
            framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
            while not self.closing.is_set():  # endless: only a reader that stops lets this end
                writer.write(framed)
                await writer.drain()
                self.huge_bytes_written += len(chunk)
        await writer.drain()
        return True
