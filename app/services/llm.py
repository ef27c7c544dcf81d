"""A thin async client for OpenAI-compatible Chat Completions, over the official `openai` package.

Groundwork for the full-pipeline PAL (docs/llm-pipeline.md); nothing calls it yet.

`stream_reply` yields the answer's text deltas as they arrive; `complete` returns a whole
answer. Every failure — connection refused, a timeout, an HTTP error, a stream or body that
is not what the API sends — becomes one `LlmUnavailable(reason)`, so the caller has a single
thing to catch (a PAL stays in the call, stays quiet and records the reason). The reason
never contains the API key: it is built here from the failure's kind, the original
exception is not chained (`from None`), and any text taken from a response is scrubbed.

`timeout` bounds every wait on the server (connecting, the first token, each gap between
tokens); `deadline`, when given, bounds the whole call. No retries: a PAL in a meeting
would rather stay quiet than answer late.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import openai
from openai import AsyncOpenAI

log = logging.getLogger(__name__)

Message = Mapping[str, Any]
MAX_REASON_CHARS = 300


class LlmUnavailable(Exception):
    """The LLM could not give an answer; `reason` says why, without any secret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _scrub(text: str, api_key: str | None) -> str:
    if api_key:
        text = text.replace(api_key, "[redacted]")
        if len(api_key) >= 8:  # a provider may echo part of it ("sk-abc…xyz")
            text = text.replace(api_key[:8], "[redacted]").replace(api_key[-6:], "[redacted]")
    return text[:MAX_REASON_CHARS]


def _reason(exc: BaseException, api_key: str | None) -> str:
    if isinstance(exc, (openai.APITimeoutError, asyncio.TimeoutError, TimeoutError)):
        return "timeout: the LLM did not answer in time"
    if isinstance(exc, openai.APIStatusError):
        detail = ""
        body = exc.body
        if isinstance(body, Mapping):
            inner = body.get("error", body)
            if isinstance(inner, Mapping) and isinstance(inner.get("message"), str):
                detail = ": " + inner["message"]
        return _scrub(f"http {exc.status_code}{detail}", api_key)
    if isinstance(exc, openai.APIConnectionError):
        return "connection failed: the LLM endpoint could not be reached"
    if isinstance(exc, (openai.APIResponseValidationError, ValueError, KeyError, TypeError,
                        AttributeError, IndexError)):
        return f"malformed response: {type(exc).__name__}"
    if isinstance(exc, openai.OpenAIError):
        return _scrub(f"client error: {type(exc).__name__}", api_key)
    return f"unexpected error: {type(exc).__name__}"


def make_client(*, base_url: str, api_key: str, timeout: float) -> AsyncOpenAI:
    """An `AsyncOpenAI` for one endpoint: no retries, `timeout` on every wait."""
    try:
        return AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", timeout=timeout,
                           max_retries=0)
    except Exception as exc:  # a malformed base_url, for instance
        raise LlmUnavailable(_scrub(f"bad configuration: {type(exc).__name__}", api_key)) from None


def _fail(exc: BaseException, api_key: str) -> LlmUnavailable:
    reason = _reason(exc, api_key)
    log.warning("llm call failed: %s", reason)
    return LlmUnavailable(reason)


def _options(max_tokens: int | None, temperature: float | None) -> dict[str, Any]:
    """The optional request fields that were given (the server's defaults for the rest)."""
    given = {"max_tokens": max_tokens, "temperature": temperature}
    return {name: value for name, value in given.items() if value is not None}


async def stream_reply(
    messages: Sequence[Message],
    *,
    model: str,
    base_url: str,
    api_key: str,
    timeout: float,
    deadline: float | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> AsyncIterator[str]:
    """The answer's text deltas, each as soon as the server sends it (empty ones skipped).

    Raises `LlmUnavailable` on any failure, including one in the middle of the stream.
    `deadline` (seconds) bounds the time spent waiting on the server over the whole call.
    """
    loop = asyncio.get_running_loop()
    budget = deadline
    client = make_client(base_url=base_url, api_key=api_key, timeout=timeout)
    extra = _options(max_tokens, temperature)

    async def waited(awaitable: Any) -> Any:
        nonlocal budget
        if budget is None:
            return await awaitable
        if budget <= 0:
            raise TimeoutError
        started = loop.time()
        try:
            async with asyncio.timeout(budget):
                return await awaitable
        finally:
            budget -= loop.time() - started

    stream = None
    try:
        try:
            stream = await waited(client.chat.completions.create(
                model=model, messages=list(messages), stream=True, **extra))
            iterator = stream.__aiter__()
            while True:
                try:
                    chunk = await waited(iterator.__anext__())
                except StopAsyncIteration:
                    break
                if getattr(chunk, "error", None):
                    raise LlmUnavailable(_scrub("stream error from the LLM", api_key))
                for choice in chunk.choices or ():
                    text = choice.delta.content if choice.delta is not None else None
                    if text:
                        yield text
        except LlmUnavailable:
            raise
        except Exception as exc:
            raise _fail(exc, api_key) from None
    finally:
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.close()
        with contextlib.suppress(Exception):
            await client.close()


async def complete(
    messages: Sequence[Message],
    *,
    model: str,
    base_url: str,
    api_key: str,
    timeout: float,
    deadline: float | None = None,
    max_tokens: int | None = None,
    temperature: float | None = None,
) -> str:
    """The whole answer of one non-streamed call (the meeting notes, say); `deadline` as above."""
    client = make_client(base_url=base_url, api_key=api_key, timeout=timeout)
    extra = _options(max_tokens, temperature)
    try:
        try:
            async with asyncio.timeout(deadline):
                response = await client.chat.completions.create(
                    model=model, messages=list(messages), **extra)
            if not response.choices:
                raise ValueError("no choices")
            content = response.choices[0].message.content
            if not isinstance(content, str):
                raise TypeError("no text content")
            return content
        except LlmUnavailable:
            raise
        except Exception as exc:
            raise _fail(exc, api_key) from None
    finally:
        with contextlib.suppress(Exception):
            await client.close()


SPEECH_RATE = 24_000  # OpenAI's response_format "pcm": 24 kHz mono s16le, no header
MAX_SPEECH_BYTES = 24_000 * 2 * 120  # two minutes of audio: more is refused, not buffered


async def speech(
    text: str, *, base_url: str, api_key: str, model: str, voice: str, timeout: float,
) -> bytes:
    """`/audio/speech` of an OpenAI-compatible server: raw 24 kHz mono s16le PCM of `text`.

    Raises `LlmUnavailable` on any failure, an answer that is not PCM-sized, or one over
    MAX_SPEECH_BYTES (read as a stream, so a huge answer is cut off rather than buffered)."""
    client = make_client(base_url=base_url, api_key=api_key, timeout=timeout)
    try:
        try:
            async with asyncio.timeout(timeout * 2):
                async with client.audio.speech.with_streaming_response.create(
                        model=model, voice=voice, input=text, response_format="pcm") as response:
                    pcm = bytearray()
                    async for part in response.iter_bytes():
                        pcm += part
                        if len(pcm) > MAX_SPEECH_BYTES:
                            raise ValueError("speech answer too large")
            if len(pcm) % 2:
                raise ValueError("odd number of PCM bytes")
            return bytes(pcm)
        except LlmUnavailable:
            raise
        except Exception as exc:
            raise _fail(exc, api_key) from None
    finally:
        with contextlib.suppress(Exception):
            await client.close()
