"""An OpenAI-compatible Chat Completions server for tests, on loopback, in-process.

A raw asyncio HTTP/1.1 server (no framework), so that every byte on the wire is under the
test's control: ``POST /v1/chat/completions`` answers JSON, or with ``"stream": true``
Server-Sent Events in the real API's format, sent with chunked transfer encoding::

    data: {"id":"chatcmpl-…","object":"chat.completion.chunk","created":…,"model":…,
           "choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}
    data: {… "choices":[{"index":0,"delta":{"content":"Hello"},"finish_reason":null}]}
    data: {… "choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}
    data: [DONE]

Modes (attribute ``mode``):

- ``"reply"``: the scripted reply (``chunks``), ``chunk_delay`` seconds apart, after
  ``first_token_delay`` seconds (a slow server when that exceeds the client's timeout);
- ``"fail"``: HTTP ``fail_status`` (500 by default; 503 works too) with an API error body;
- ``"hang"``: reads the request and never answers (the connection stays open);
- ``"garbage"``: a 200 whose stream (or JSON body) is not valid JSON.

``respond(body)``, when set, picks the chunks per request (a greeting, an answer, the notes), and
``POST /v1/audio/speech`` answers OpenAI's ``response_format: "pcm"`` (raw 24 kHz mono s16le): a
``speech_freq`` Hz tone as long as the input (``speech_mode = "fail"`` for a 500), so a test can
tell this voice from espeak-ng's at the far end.

Every request is recorded (``requests``: method, path, headers, parsed body), and a request
without ``Authorization: Bearer <api_key>`` is refused with a 401 like the real API's.
``finished`` is set whenever a streamed reply has been completely sent.

    stub = LlmStub(api_key="sk-test")
    await stub.start()          # stub.base_url == "http://127.0.0.1:<port>/v1"
    ...
    await stub.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SPEECH_RATE = 24_000
DEFAULT_REPLY = ["Hello", " there", ".", " The budget", " is", " 3.5", " million", "."]
MODES = ("reply", "fail", "hang", "garbage")
_REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found",
            405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class StubRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def authorization(self) -> str:
        return self.headers.get("authorization", "")


@dataclass
class LlmStub:
    api_key: str = "sk-stub-key"
    mode: str = "reply"
    chunks: list[str] = field(default_factory=lambda: list(DEFAULT_REPLY))
    first_token_delay: float = 0.0
    chunk_delay: float = 0.0
    fail_status: int = 500
    requests: list[StubRequest] = field(default_factory=list)
    unauthorized: int = 0
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    host: str = "127.0.0.1"
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task] = field(default_factory=set)
    _writers: set[asyncio.StreamWriter] = field(default_factory=set)
    _closing: asyncio.Event = field(default_factory=asyncio.Event)
    # respond(body) -> chunks for this request, or None for `chunks`: a test answers a greeting,
    # a question and a notes request differently, from what the request asks.
    respond: Callable[[dict[str, Any]], list[str] | None] | None = None
    # /v1/audio/speech: a tone of `speech_freq` Hz, `speech_seconds_per_char` long per input character
    speech_freq: float = 660.0
    speech_seconds_per_char: float = 0.05
    speech_mode: str = "reply"  # or "fail"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    @property
    def reply_text(self) -> str:
        return "".join(self.chunks)

    async def start(self) -> LlmStub:
        assert self.host == "127.0.0.1", "the stub listens on loopback only"
        self._server = await asyncio.start_server(self._connection, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        # Connections end by themselves once their socket is closed (and a hanging one once
        # `_closing` is set); cancelling them instead makes asyncio log a spurious error.
        self._closing.set()
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        tasks = list(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2)
            for task in pending:
                task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    async def __aenter__(self) -> LlmStub:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- HTTP -------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            while await self._one_request(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, OSError):
            pass
        finally:
            self._tasks.discard(task)
            self._writers.discard(writer)
            writer.close()

    async def _one_request(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the connection may carry another."""
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        raw = await reader.readexactly(length) if length else b""
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self.requests.append(StubRequest(method, path, headers, body))

        route = path.split("?")[0].rstrip("/")
        if route == "/v1/audio/speech" and method == "POST":
            return await self._speech(writer, headers, body)
        if route != "/v1/chat/completions":
            await self._json(writer, 404, _error("Unknown path.", "invalid_request_error", None))
            return True
        if method != "POST":
            await self._json(writer, 405, _error("Use POST.", "invalid_request_error", None))
            return True
        if headers.get("authorization") != f"Bearer {self.api_key}":
            self.unauthorized += 1
            await self._json(writer, 401, _error(
                "Incorrect API key provided.", "invalid_request_error", "invalid_api_key"))
            return True
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            await self._json(writer, 400, _error(
                "model and messages are required.", "invalid_request_error", None))
            return True

        if self.mode == "hang":
            await self._closing.wait()  # never answers; ends when the stub closes
            return False
        if self.mode == "fail":
            await self._json(writer, self.fail_status, _error(
                "The server had an error while processing your request.", "server_error", None))
            return True
        if self.first_token_delay:
            await asyncio.sleep(self.first_token_delay)
        model = str(body["model"])
        chunks = (self.respond(body) if self.respond is not None else None) or self.chunks
        if body.get("stream"):
            await self._stream(writer, model, chunks)
            return False
        if self.mode == "garbage":
            await self._send(writer, 200, b'{"id": "chatcmpl-x", "choices": [{"mess', "application/json")
            return True
        await self._json(writer, 200, _completion(model, "".join(chunks)))
        return True

    async def _speech(self, writer: asyncio.StreamWriter, headers: dict[str, str], body: Any) -> bool:
        """OpenAI's /v1/audio/speech with response_format "pcm": raw 24 kHz mono s16le."""
        if headers.get("authorization") != f"Bearer {self.api_key}":
            self.unauthorized += 1
            await self._json(writer, 401, _error("Incorrect API key provided.", "invalid_request_error",
                                                 "invalid_api_key"))
            return True
        if not isinstance(body, dict) or not isinstance(body.get("input"), str) or not body.get("voice"):
            await self._json(writer, 400, _error("model, input and voice are required.", "invalid_request_error", None))
            return True
        if self.speech_mode == "fail":
            await self._json(writer, 500, _error("The server had an error.", "server_error", None))
            return True
        seconds = min(5.0, max(0.2, len(body["input"]) * self.speech_seconds_per_char))
        n = int(SPEECH_RATE * seconds)
        pcm = b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * self.speech_freq * i / SPEECH_RATE)))
                       for i in range(n))
        await self._send(writer, 200, pcm, "application/octet-stream")
        return True

    async def _stream(self, writer: asyncio.StreamWriter, model: str, chunks: list[str]) -> None:
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"
            b"Cache-Control: no-cache\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
            b"x-request-id: req_stub\r\n\r\n")
        await writer.drain()
        ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

        async def event(data: str) -> None:
            payload = f"data: {data}\n\n".encode()
            writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))
            await writer.drain()

        def chunk(delta: dict[str, Any], finish: str | None) -> str:
            return json.dumps({
                "id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_stub",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }, separators=(",", ":"))

        if self.mode == "garbage":
            await event(chunk({"role": "assistant", "content": ""}, None))
            await event('{"id": "chatcmpl-x", "choices": [{"delta": {"content": "oops')
            await event("this is not json at all")
        else:
            await event(chunk({"role": "assistant", "content": ""}, None))
            for i, text in enumerate(chunks):
                if i and self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                await event(chunk({"content": text}, None))
            await event(chunk({}, "stop"))
            await event("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        self.finished.set()

    async def _json(self, writer: asyncio.StreamWriter, status: int, body: Any) -> None:
        await self._send(writer, status, json.dumps(body).encode(), "application/json")

    async def _send(self, writer: asyncio.StreamWriter, status: int, payload: bytes, ctype: str) -> None:
        writer.write(
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\nContent-Type: {ctype}\r\n"
            f"Content-Length: {len(payload)}\r\nx-request-id: req_stub\r\n\r\n".encode() + payload)
        await writer.drain()


def _error(message: str, kind: str, code: str | None) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def _completion(model: str, text: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion",
        "created": int(time.time()), "model": model, "system_fingerprint": "fp_stub",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text, "refusal": None},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
