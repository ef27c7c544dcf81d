"""app/services/llm.py against an OpenAI-compatible stub on loopback (tests/llm_stub.py).

The real `openai` client speaks HTTP to the stub: streamed deltas, the request it sends,
and every failure mode mapped to one LlmUnavailable that never shows the API key.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest

from app.domain.speech_text import speakable_sentences
from app.services.llm import LlmUnavailable, complete, stream_reply
from tests.llm_stub import LlmStub
from tests.servers import free_port

SECRET = "sk-test-Zq8vR3kP9wLm2Xt7"
MODEL = "stub-model-1"
MESSAGES = [
    {"role": "system", "content": "You are Anna, a meeting assistant."},
    {"role": "user", "content": "Alex: What is the budget?"},
]


@pytest.fixture
async def stub() -> AsyncIterator[LlmStub]:
    server = await LlmStub(api_key=SECRET).start()
    try:
        yield server
    finally:
        await server.close()


@pytest.fixture
def all_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def _call(stub: LlmStub, **kw):
    args = dict(model=MODEL, base_url=stub.base_url, api_key=SECRET, timeout=5.0)
    args.update(kw)
    return stream_reply(MESSAGES, **args)


async def _failure(stream, caplog: pytest.LogCaptureFixture, *, within: float) -> LlmUnavailable:
    started = time.monotonic()
    with pytest.raises(LlmUnavailable) as info:
        async for _ in stream:
            pass
    assert time.monotonic() - started < within
    exc = info.value
    assert exc.reason and str(exc) == exc.reason
    assert exc.__cause__ is None and exc.__suppress_context__
    assert SECRET not in str(exc) and SECRET not in repr(exc)
    assert SECRET not in caplog.text
    assert all(SECRET not in str(r.args) and SECRET not in r.getMessage() for r in caplog.records)
    return exc


async def test_deltas_arrive_in_order_and_before_the_stub_finishes(stub: LlmStub, all_logs) -> None:
    stub.chunk_delay = 0.15
    deltas: list[str] = []
    finished_at_first: bool | None = None
    async for delta in _call(stub):
        if finished_at_first is None:
            finished_at_first = stub.finished.is_set()
        deltas.append(delta)
    assert finished_at_first is False
    assert deltas == stub.chunks
    assert stub.finished.is_set()
    assert SECRET not in all_logs.text


async def test_request_carries_model_messages_stream_and_bearer_key(stub: LlmStub) -> None:
    assert [d async for d in _call(stub, max_tokens=77, temperature=0.3)]
    [request] = stub.requests
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.authorization == f"Bearer {SECRET}"
    assert request.body["model"] == MODEL
    assert request.body["messages"] == MESSAGES
    assert request.body["stream"] is True
    assert request.body["max_tokens"] == 77 and request.body["temperature"] == 0.3
    assert stub.unauthorized == 0


async def test_complete_returns_the_whole_answer(stub: LlmStub) -> None:
    text = await complete(MESSAGES, model=MODEL, base_url=stub.base_url, api_key=SECRET, timeout=5)
    assert text == stub.reply_text
    [request] = stub.requests
    assert request.body["model"] == MODEL and request.body["messages"] == MESSAGES
    assert not request.body.get("stream")


async def test_streamed_tokens_become_speakable_sentences_early(stub: LlmStub) -> None:
    stub.chunks = ["**Sure.**", " The budget", " is 3.5", " million", " (see [doc](https://x.example/b))."]
    stub.chunks += [" Next", " step", " is hiring."]
    stub.chunk_delay = 0.1
    said: list[tuple[str, bool]] = []
    async for sentence in speakable_sentences(_call(stub)):
        said.append((sentence, stub.finished.is_set()))
    assert [s for s, _ in said] == ["Sure.", "The budget is 3.5 million (see doc).", "Next step is hiring."]
    assert said[0][1] is False and said[1][1] is False


async def test_slow_first_token_times_out_quickly(stub: LlmStub, all_logs) -> None:
    stub.first_token_delay = 3.0
    exc = await _failure(_call(stub, timeout=0.5), all_logs, within=2.0)
    assert exc.reason.startswith("timeout")


async def test_deadline_bounds_a_trickling_stream(stub: LlmStub, all_logs) -> None:
    stub.chunk_delay = 0.3  # each gap is under `timeout`, the whole is not under `deadline`
    received: list[str] = []

    async def consume() -> None:
        async for delta in _call(stub, timeout=2.0, deadline=0.8):
            received.append(delta)

    exc = await _failure(consume_iter(consume), all_logs, within=2.0)
    assert exc.reason.startswith("timeout")
    assert 0 < len(received) < len(stub.chunks)


async def consume_iter(consume) -> AsyncIterator[None]:
    """Run `consume` as an async iterator of nothing, for `_failure`."""
    await consume()
    return
    yield


@pytest.mark.parametrize("status", [500, 503])
async def test_http_errors_raise_with_the_status(stub: LlmStub, all_logs, status: int) -> None:
    stub.mode, stub.fail_status = "fail", status
    exc = await _failure(_call(stub), all_logs, within=2.0)
    assert exc.reason.startswith(f"http {status}")
    assert len(stub.requests) == 1, "no retries"


async def test_hang_raises_a_timeout(stub: LlmStub, all_logs) -> None:
    stub.mode = "hang"
    exc = await _failure(_call(stub, timeout=0.5), all_logs, within=2.0)
    assert exc.reason.startswith("timeout")


async def test_garbage_stream_is_a_malformed_response(stub: LlmStub, all_logs) -> None:
    stub.mode = "garbage"
    exc = await _failure(_call(stub), all_logs, within=2.0)
    assert exc.reason.startswith("malformed response")


async def test_garbage_body_from_complete_is_a_malformed_response(stub: LlmStub, all_logs) -> None:
    stub.mode = "garbage"

    async def call() -> AsyncIterator[None]:
        await complete(MESSAGES, model=MODEL, base_url=stub.base_url, api_key=SECRET, timeout=2)
        yield

    exc = await _failure(call(), all_logs, within=2.0)
    assert exc.reason.startswith("malformed response")


async def test_complete_failures_are_mapped_too(stub: LlmStub, all_logs) -> None:
    stub.mode = "fail"

    async def call() -> AsyncIterator[None]:
        await complete(MESSAGES, model=MODEL, base_url=stub.base_url, api_key=SECRET, timeout=2)
        yield

    exc = await _failure(call(), all_logs, within=2.0)
    assert exc.reason.startswith("http 500")


async def test_wrong_key_is_a_401_that_does_not_echo_either_key(stub: LlmStub, all_logs) -> None:
    wrong = "sk-wrong-Hh5Jj6Kk7Ll8"
    exc = await _failure(_call(stub, api_key=wrong), all_logs, within=2.0)
    assert exc.reason.startswith("http 401")
    assert wrong not in str(exc) and wrong not in all_logs.text
    assert stub.unauthorized == 1


async def test_connection_refused_is_reported(all_logs) -> None:
    port = free_port()  # nothing listens there
    stream = stream_reply(MESSAGES, model=MODEL, base_url=f"http://127.0.0.1:{port}/v1",
                          api_key=SECRET, timeout=2.0)
    exc = await _failure(stream, all_logs, within=2.0)
    assert exc.reason.startswith("connection failed")


async def test_a_consumer_that_stops_early_closes_the_stream(stub: LlmStub) -> None:
    stub.chunk_delay = 0.05
    stream = _call(stub)
    assert await stream.__anext__() == stub.chunks[0]
    await stream.aclose()
    await asyncio.sleep(0)
    # The stub keeps serving afterwards.
    assert [d async for d in _call(stub)] == stub.chunks


def test_settings_read_llm_defaults_and_never_show_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config import Settings

    monkeypatch.setenv("LLM_API_KEY", SECRET)
    monkeypatch.setenv("LLM_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("LLM_MODEL", MODEL)
    monkeypatch.setenv("LLM_TIMEOUT_SECONDS", "2.5")
    settings = Settings()
    assert (settings.llm_api_key, settings.llm_base_url, settings.llm_model, settings.llm_timeout) == (
        SECRET, "http://127.0.0.1:9/v1", MODEL, 2.5)
    assert SECRET not in repr(settings) and SECRET not in str(settings)


async def test_stub_speaks_the_real_sse_wire_format(stub: LlmStub) -> None:
    import json

    import httpx

    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    async with httpx.AsyncClient(timeout=5) as http:
        response = await http.post(f"{stub.base_url}/chat/completions", json=body,
                                   headers={"Authorization": f"Bearer {SECRET}"})
        refused = await http.post(f"{stub.base_url}/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line for line in response.text.split("\n") if line]
    assert all(line.startswith("data: ") for line in events)
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[len("data: "):]) for line in events[:-1]]
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert all(c["model"] == MODEL and c["choices"][0]["index"] == 0 for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == stub.reply_text
    assert [c["choices"][0]["finish_reason"] for c in chunks][-2:] == [None, "stop"]
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
