"""A `full` PAL takes part in a real meeting, with every real part.

PostgreSQL, Redis, a real API process, an arq worker running the real bot in Chromium against the
Meet look-alike (scripted captions, the far end's AnalyserNode on the PAL's voice), and the
OpenAI-compatible stub on loopback (tests/llm_stub.py) as the PAL's layers.llm.

One meeting: admitted -> the LLM's greeting is spoken; Bob's caption "Anna, what is on the
agenda?" -> the stub's answer is heard at the far end and stored as the PAL's words; Carol
starting to talk during the answer silences it; after the PAL leaves, its notes are stored and
served by REST and GraphQL.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

from app.config import reset_settings
from app.services import pals as pal_service
from tests.fixtures import run_worker
from tests.integration.test_live_status import LiveServer, start_api
from tests.integration.test_media_e2e import QUIET, StreamClient, new_code, stream_url, window
from tests.llm_stub import LlmStub
from tests.meet_lookalike import MeetLookalike

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium not installed (apt-get install chromium)"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
]

BOB, CAROL = "Bob Smith", "Carol Jones"
QUESTION = "Anna, what is on the agenda?"
GREETING = ["Hello everyone, ", "I am Anna."]
ANSWER = ["First we review the budget for the third quarter. ", "Then we agree on the launch date. ",
          "After that we plan the offsite in the spring. ", "Then we look at hiring for the new team. ",
          "We close with questions from everyone in the room."]
LAST_SENTENCE = ANSWER[-1].strip()
NOTES = "Summary:\nThe agenda was shared.\n\nDecisions:\n- Review the budget first.\n\nAction items:\n- Bob: book the offsite\n"
CAPTIONS = [  # from the moment the bot turns captions on (just after admission)
    {"at": 7.0, "row": "b1", "speaker": BOB, "text": "Anna, what is"},
    {"at": 7.4, "row": "b1", "speaker": BOB, "text": QUESTION},
    {"at": 14.0, "row": "c1", "speaker": CAROL, "text": "Sorry to jump in"},
    {"at": 14.4, "row": "c1", "speaker": CAROL, "text": "Sorry to jump in, one thing first."},
]
LOUD = 0.02
BARGE_IN_BOUND = 1.5  # s, Carol's caption at the client -> far end quiet (caption polling + clear)


def respond(body: dict[str, Any]) -> list[str] | None:
    system = body["messages"][0]["content"]
    if system.startswith("You write the notes"):
        return [NOTES]
    if "Greet the attendees" in system:
        return GREETING
    if "just spoke to you" in system:
        return ANSWER
    return ["I do not know."]


@pytest.fixture(scope="module")
async def server(database: None) -> AsyncIterator[LiveServer]:
    async with start_api() as live:
        yield live


@pytest.fixture
async def stub() -> AsyncIterator[LlmStub]:
    async with LlmStub(api_key="sk-e2e-secret-5678", respond=respond) as server:
        yield server


async def test_a_full_pal_greets_answers_stops_when_interrupted_and_writes_notes(
        invited_pal, server, redis_queue, stub, monkeypatch, meet_lookalike: MeetLookalike) -> None:
    view, key = invited_pal
    monkeypatch.setenv("LLM_ALLOWED_HOSTS", "127.0.0.1")
    reset_settings()
    await pal_service.patch_pal(await _account_of(view), view["pal_id"], [
        {"op": "add", "path": "/layers/llm", "value": {"base_url": stub.base_url, "api_key": stub.api_key,
                                                       "model": "stub-model"}},
        {"op": "replace", "path": "/system_prompt", "value": "You are Anna. Greet attendees and answer questions."}])
    code = new_code()
    # tones=[]: no participant tones, but the far end that measures the PAL's voice is connected
    url = meet_lookalike.configure(code, "stay", admit_after=0.5, captions=CAPTIONS, tones=[])
    rec = meet_lookalike.record(code)
    headers = {"x-api-key": key}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
        created = await http.post("/v2/conversations", json={"pal_id": view["pal_id"], "meeting_url": url})
        assert created.status_code == 200, created.text
        cid = created.json()["conversation_id"]
        async with connect(stream_url(server, cid), additional_headers=headers) as ws:
            client = StreamClient(ws)
            await client.until(lambda: client.of("started"), 10, "started")
            worker = asyncio.create_task(run_worker())
            marks: dict[str, float] = {}
            try:
                await client.until(lambda: any(e["status"] == "in_call" for e in client.of("status")) or worker.done(),
                                   90, "in_call")
                assert not worker.done()
                marks["in_call"] = time.time()

                def own() -> list[str]:
                    return [e["text"] for e in client.of("transcript") if e.get("self")]

                # Greeting: the LLM's words, spoken once admitted.
                await client.until(lambda: "I am Anna." in own(), 20, "the greeting")
                # Bob's question: final once it settles; the answer's first sentence follows.
                question_at = await client.until(lambda: next(
                    (t for t, e in client.events if e.get("type") == "transcript" and e.get("final")
                     and e.get("text") == QUESTION), None), 30, "Bob's final line")
                await client.until(lambda: ANSWER[0].strip() in own(), 20, "the answer's first sentence")
                loud = await client.until(lambda: next(
                    (s["t"] for s in window(rec.far_audio, question_at, time.time()) if s["rms"] > LOUD), None),
                    20, "the answer at the far end")
                marks["first_audio"] = loud
                # Carol starts talking during the answer: the PAL stops.
                carol_at = await client.until(lambda: next(
                    (t for t, e in client.events if e.get("type") == "transcript" and e.get("speaker") == CAROL),
                    None), 30, "Carol's caption")
                await asyncio.sleep(BARGE_IN_BOUND + 1.0)
                marks["carol"] = carol_at
                marks["after"] = time.time()
                await asyncio.sleep(3.0)  # the rest of the answer would still be playing by now
            finally:
                ended = await http.post(f"/v2/conversations/{cid}/end")
                await asyncio.wait_for(worker, timeout=90)
            assert ended.status_code == 200, ended.text
        notes = (await http.get(f"/v2/conversations/{cid}/notes")).json()
        transcript = (await http.get(f"/v2/conversations/{cid}/transcript")).json()
        graphql = (await http.post("/graphql", json={"query": """
            query($id: ID!) { conversation(conversationId: $id) { notes { status decisions
              actionItems { owner task } } } }""", "variables": {"id": cid}})).json()

    far = rec.far_audio
    # The answer was heard; the interruption silenced it soon and for good.
    assert [s for s in window(far, question_at, carol_at) if s["rms"] > LOUD], "no answer at the far end"
    quiet_at = next((s["t"] for s in window(far, carol_at, marks["after"] + 3) if s["rms"] < QUIET), None)
    assert quiet_at is not None, window(far, carol_at, carol_at + 3)
    assert all(s["rms"] < QUIET for s in window(far, quiet_at + 0.5, marks["after"] + 3)), "spoke on after Carol"
    said = [e["text"] for e in transcript["entries"] if e["self"]]
    assert said[:2] == ["Hello everyone", "I am Anna."] and ANSWER[0].strip() in said, said
    assert LAST_SENTENCE not in said, said
    # The prompts: the system prompt and the question reached the LLM.
    answer_request = next(r.body for r in stub.requests if "just spoke to you" in r.body["messages"][0]["content"])
    assert "You are Anna." in answer_request["messages"][0]["content"]
    assert {"role": "user", "content": f"{BOB}: {QUESTION}"} in answer_request["messages"]
    # Notes: stored after the call, the same through REST and GraphQL.
    assert notes["status"] == "ready", notes
    assert notes["decisions"] == ["Review the budget first."]
    assert notes["action_items"] == [{"owner": "Bob", "task": "book the offsite"}]
    assert graphql["data"]["conversation"]["notes"] == {
        "status": "READY", "decisions": ["Review the budget first."],
        "actionItems": [{"owner": "Bob", "task": "book the offsite"}]}, graphql
    print(f"E2E full PAL: question final -> first far-end audio {1000 * (marks['first_audio'] - question_at):.0f} ms; "
          f"Carol's caption -> far end quiet {1000 * (quiet_at - carol_at):.0f} ms; said {said}")
    assert quiet_at - carol_at <= BARGE_IN_BOUND, quiet_at - carol_at


async def _account_of(view: dict[str, Any]) -> int:
    from app.tables import Pal

    return (await Pal.select(Pal.account).where(Pal.pal_id == view["pal_id"]).first())["account"]


async def test_a_pal_with_an_http_voice_speaks_with_it_and_says_when_it_cannot_hear(
        invited_pal, server, redis_queue, stub, monkeypatch, meet_lookalike: MeetLookalike) -> None:
    """layers.tts provider "openai": the greeting is the voice endpoint's audio (the stub's 660 Hz
    tone, heard at the far end); captions off by policy -> an event and a stream notice."""
    view, key = invited_pal
    monkeypatch.setenv("LLM_ALLOWED_HOSTS", "127.0.0.1")
    reset_settings()
    await pal_service.patch_pal(await _account_of(view), view["pal_id"], [
        {"op": "add", "path": "/layers/llm", "value": {"base_url": stub.base_url, "api_key": stub.api_key}},
        {"op": "add", "path": "/layers/tts", "value": {"provider": "openai", "voice": "nova"}}])
    code = new_code()
    url = meet_lookalike.configure(code, "stay", admit_after=0.5, tones=[], no_captions=True)
    rec = meet_lookalike.record(code)
    headers = {"x-api-key": key}
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as http:
        created = await http.post("/v2/conversations", json={"pal_id": view["pal_id"], "meeting_url": url})
        cid = created.json()["conversation_id"]
        async with connect(stream_url(server, cid), additional_headers=headers) as ws:
            client = StreamClient(ws)
            await client.until(lambda: client.of("started"), 10, "started")
            worker = asyncio.create_task(run_worker())
            try:
                await client.until(lambda: any(e["status"] == "in_call" for e in client.of("status")) or worker.done(),
                                   90, "in_call")
                in_call = time.time()
                await client.until(lambda: len([s for s in window(rec.far_audio, in_call, time.time())
                                                if s["rms"] > LOUD]) >= 20, 20, "the greeting at the far end")
                notice = await client.until(lambda: client.of("notice"), 20, "the captions notice")
            finally:
                await http.post(f"/v2/conversations/{cid}/end")
                await asyncio.wait_for(worker, timeout=90)
    speech = [r for r in stub.requests if r.path.startswith("/v1/audio/speech")]
    assert speech and speech[0].body["voice"] == "nova" and speech[0].body["response_format"] == "pcm"
    assert speech[0].authorization == f"Bearer {stub.api_key}"
    loud = [s for s in window(rec.far_audio, in_call, time.time()) if s["rms"] > LOUD]
    heard = sorted(s["f"] for s in loud)[len(loud) // 2]
    assert abs(heard - stub.speech_freq) <= 20, heard  # the endpoint's voice, not espeak-ng
    assert notice[0]["kind"] == "captions_unavailable", notice
    from app.tables import PalEvent

    rows = await PalEvent.select(PalEvent.kind, PalEvent.payload).where(PalEvent.kind == "captions_unavailable")
    assert len(rows) == 1 and cid in str(rows[0]["payload"]), rows
