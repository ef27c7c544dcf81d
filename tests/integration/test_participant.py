"""The full pipeline without a browser: the participant loop against the real LLM stub on loopback,
real PostgreSQL (PALs, sealed keys, calendar series, notes, events) and the real `openai` client.

The bot's voice is replaced by `Voice`, which takes the participant's commands off the queue and
reports them back as the bot's speaker would (self speech, then quiet): what these tests check is
the loop's decisions, prompts and failure handling. tests/integration/test_participant_e2e.py
runs the same loop inside a real bot in Chromium.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from typing import Any

import pytest

from app.config import reset_settings
from app.domain.meeting_prompt import TranscriptLine
from app.services import pals as pal_service
from app.services import pipeline
from app.services.accounts import create_account
from app.services.conversations import notes as conversation_notes
from app.tables import Conversation, Join, Pal, PalEvent
from tests.integration.test_scheduling import NOW, deliver, event
from tests.llm_stub import LlmStub
from workers.meet_bot.channels import Caption, ChatMessage, Clear, Say, SendChat
from workers.participant import APOLOGY, Participant

NOTES_1 = """Summary:
The team planned the launch.

Decisions:
- The launch moves to 12 March.

Action items:
- Bob: send the revised budget
"""


class Voice:
    """Plays the bot's part: each Say is 'spoken' for `seconds`, then the voice goes quiet."""

    def __init__(self, participant: Participant, seconds: float = 0.05) -> None:
        self.p = participant
        self.seconds = seconds
        self.said: list[str] = []
        self.chat: list[str] = []
        self.clears = 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            cmd = await self.p.commands.get()
            if isinstance(cmd, Say):
                self.p.on_speaking(True)
                self.said.append(cmd.text)
                self.p.on_self_speech(cmd.text, NOW)
                await asyncio.sleep(self.seconds)
                if self.p.commands.empty():
                    self.p.on_speaking(False)
            elif isinstance(cmd, SendChat):
                self.chat.append(cmd.text)
            elif isinstance(cmd, Clear):
                self.clears += 1
                self.p.on_speaking(False)


@pytest.fixture
async def stub():
    async with LlmStub(api_key="sk-stub-secret-1234") as server:
        yield server


@pytest.fixture
async def full_pal(clean_db, redis_queue, stub, monkeypatch):
    """Anna, `full`, with her own layers.llm on the stub (allowed although it is loopback)."""
    monkeypatch.setenv("LLM_ALLOWED_HOSTS", "127.0.0.1")
    monkeypatch.setenv("PLANNING_HORIZON_DAYS", "30")
    reset_settings()
    account, _ = await create_account("acme")
    view = await pal_service.create_pal(account.id, {
        "pal_name": "Anna", "default_face_id": "r90bbd427f71", "pipeline_mode": "full",
        "system_prompt": "You are Anna. Greet attendees, take notes, and answer questions about the agenda.",
        "layers": {"conferencing": {"username": "acme-anna", "allowlist": [".*@acme\\.com"]},
                   "llm": {"base_url": stub.base_url, "api_key": stub.api_key, "model": "stub-model"}},
    })
    pk = (await Pal.select(Pal.id).where(Pal.pal_id == view["pal_id"]).first())["id"]
    yield account, view, pk
    reset_settings()


async def participant_for(pal_pk: int, join_pk: int, conversation_pk: int, events: list) -> Participant:
    setup = await pipeline.setup_for_run(pal_pk, join_pk)
    assert setup.thinks, setup.problem

    async def record(kind: str, payload: dict[str, Any]) -> None:
        events.append((kind, payload))

    cid = (await Conversation.select(Conversation.conversation_id).where(Conversation.id == conversation_pk).first())
    return Participant(setup, asyncio.Queue(100), conversation_pk=conversation_pk,
                       conversation_id=cid["conversation_id"], record_event=record)


async def open_conversation(account_id: int, pal_pk: int, join_pk: int) -> int:
    from app.domain.ids import new_public_id

    rows = await Conversation.insert(Conversation(
        conversation_id=new_public_id("c"), account=account_id, pal=pal_pk, face_id="r90bbd427f71",
        meeting_url="https://meet.google.com/abc-defg-hij", created_at=NOW)).returning(Conversation.id)
    await Join.update({Join.conversation: rows[0]["id"]}).where(Join.id == join_pk)
    return rows[0]["id"]


async def one_meeting(account_id: int, pal_pk: int, **kw: Any) -> tuple[dict, int]:
    """A one-off meeting two hours ahead, invited by mail, with its join's conversation."""
    await deliver("REQUEST", event(start=NOW + timedelta(hours=2), **kw))
    join = await Join.select().first()
    return join, await open_conversation(account_id, pal_pk, join["id"])


async def until(check, timeout: float = 5.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.02)


def system_of(request) -> str:
    return request.body["messages"][0]["content"]


async def test_the_key_is_sealed_and_never_shown(full_pal, stub) -> None:
    account, view, pk = full_pal
    assert view["layers"]["llm"] == {"base_url": stub.base_url, "model": "stub-model", "api_key_set": True}
    row = await Pal.select(Pal.layers, Pal.secrets).where(Pal.id == pk).first()
    assert stub.api_key not in json.dumps(row["layers"]) and stub.api_key not in (row["secrets"] or "")
    # A read-modify-write (the view sent back with a change) keeps the key; removing the layer drops it.
    patched = await pal_service.patch_pal(account.id, view["pal_id"], [
        {"op": "replace", "path": "/layers/llm/model", "value": "other-model"}])
    assert patched["layers"]["llm"]["api_key_set"] is True
    assert (await pipeline.setup_for_run(pk, 0)).llm.api_key == stub.api_key
    gone = await pal_service.patch_pal(account.id, view["pal_id"], [{"op": "remove", "path": "/layers/llm"}])
    assert "llm" not in gone["layers"]
    assert (await Pal.select(Pal.secrets).where(Pal.id == pk).first())["secrets"] is None


async def test_greets_answers_when_addressed_and_speaks_sentence_by_sentence(full_pal, stub) -> None:
    account, view, pk = full_pal
    join, conv = await one_meeting(account.id, pk, summary="Launch planning")
    events: list = []
    p = await participant_for(pk, join["id"], conv, events)
    stub.respond = lambda body: (["Hello everyone, ", "I am Anna."] if "Greet the attendees" in system_of(
        StubBody(body)) else ["First the budget. ", "Then the launch date."])
    voice = Voice(p)
    loop = asyncio.create_task(p.run())
    try:
        p.admitted()
        # The first clause goes first (it is heard while the rest is generated).
        await until(lambda: voice.said == ["Hello everyone", "I am Anna."])
        p.on_caption(Caption("Bob Smith", "Anna, what is on the", False, NOW, "b1"))
        p.on_caption(Caption("Bob Smith", "Anna, what is on the agenda?", True, NOW, "b1"))
        await until(lambda: len(voice.said) == 4)
        assert voice.said[2:] == ["First the budget.", "Then the launch date."]
    finally:
        loop.cancel()
        voice.task.cancel()
    answer = stub.requests[-1].body
    assert answer["stream"] is True and answer["model"] == "stub-model"
    system = answer["messages"][0]["content"]
    assert "You are Anna." in system and "Title: Launch planning" in system and "alex@acme.com" in system
    assert "Bob Smith just spoke to you" in system
    assert {"role": "user", "content": "Bob Smith: Anna, what is on the agenda?"} in answer["messages"]
    assert {"role": "assistant", "content": "Hello everyone\nI am Anna."} in answer["messages"]
    assert stub.requests[-1].authorization == f"Bearer {stub.api_key}"
    assert events == []


class StubBody:
    def __init__(self, body: dict) -> None:
        self.body = body


@pytest.mark.parametrize("mode", ["fail", "hang", "garbage"])
async def test_a_broken_llm_leaves_the_pal_quiet_with_one_apology_and_an_event(
        full_pal, stub, mode, monkeypatch, caplog) -> None:
    monkeypatch.setenv("LLM_ANSWER_TIMEOUT_SECONDS", "0.5")
    reset_settings()
    account, view, pk = full_pal
    join, conv = await one_meeting(account.id, pk)
    events: list = []
    p = await participant_for(pk, join["id"], conv, events)
    stub.mode = mode
    voice = Voice(p)
    loop = asyncio.create_task(p.run())
    caplog.set_level(logging.DEBUG)
    try:
        p.on_caption(Caption("Bob", "Anna, are you there?", True, NOW, "b1"))
        await until(lambda: voice.said, timeout=5)
        assert voice.said == [APOLOGY]
        await until(lambda: not p.policy.talking)  # else Carol's line would be a barge-in
        # A question nobody addressed to her gets no apology, only the event; the loop lives on.
        p.policy.min_gap = 0
        p.on_caption(Caption("Carol", "What time is it?", True, NOW, "c1"))
        p.policy.question_pause = 0.1
        await until(lambda: len(events) == 2, timeout=5)
        assert voice.said == [APOLOGY] and not loop.done()
        stub.mode = "reply"
        stub.chunks = ["It is noon."]
        await until(lambda: not p.policy.talking)
        p.on_caption(Caption("Bob", "Anna, what time is it?", True, NOW, "b2"))
        await until(lambda: voice.said[-1:] == ["It is noon."], timeout=5)
    finally:
        loop.cancel()
        voice.task.cancel()
    assert [k for k, _ in events] == ["llm_unavailable", "llm_unavailable"]
    reason = events[0][1]["reason"]
    assert reason.split(":")[0] in {"http 500", "timeout", "malformed response"}, reason
    everything = json.dumps(events) + caplog.text
    assert stub.api_key not in everything


async def test_someone_speaking_stops_the_answer_at_once(full_pal, stub) -> None:
    account, view, pk = full_pal
    join, conv = await one_meeting(account.id, pk)
    p = await participant_for(pk, join["id"], conv, [])
    stub.chunks = ["One. ", "Two. ", "Three. ", "Four. ", "Five."]
    stub.chunk_delay = 0.3
    voice = Voice(p)
    loop = asyncio.create_task(p.run())
    try:
        p.on_caption(Caption("Bob", "Anna, count to five", True, NOW, "b1"))
        await until(lambda: len(voice.said) >= 2, timeout=5)
        p.on_caption(Caption("Carol", "Sorry to interrupt", False, NOW, "c1"))
        await until(lambda: voice.clears == 1)
        await asyncio.sleep(1.0)  # the stream would have sent three more sentences by now
    finally:
        loop.cancel()
        voice.task.cancel()
    assert 2 <= len(voice.said) <= 3 and "Five." not in voice.said, voice.said
    assert p.stats.barge_ins == 1


async def test_answers_in_chat_when_named_there(full_pal, stub) -> None:
    account, view, pk = full_pal
    join, conv = await one_meeting(account.id, pk)
    p = await participant_for(pk, join["id"], conv, [])
    stub.chunks = ["**The doc** is [here](https://example.com)."]
    voice = Voice(p)
    loop = asyncio.create_task(p.run())
    try:
        p.on_chat(ChatMessage("Bob", "thanks everyone", NOW))
        p.on_chat(ChatMessage("Bob", "Anna, where is the doc?", NOW))
        await until(lambda: voice.chat)
    finally:
        loop.cancel()
        voice.task.cancel()
    assert voice.chat == ["The doc is here."]
    assert len(stub.requests) == 1 and stub.requests[0].body.get("stream") is not True


async def test_notes_are_stored_and_the_next_occurrence_of_the_series_remembers_them(full_pal, stub) -> None:
    account, view, pk = full_pal
    first = NOW + timedelta(days=1)
    await deliver("REQUEST", event(start=first, rrule="FREQ=WEEKLY;COUNT=5", summary="Weekly sync"))
    joins = await Join.select().order_by(Join.start_at)
    assert len(joins) == 5
    # Occurrence 1: the PAL leaves and writes its notes from the stored transcript.
    conv1 = await open_conversation(account.id, pk, joins[0]["id"])
    events: list = []
    p1 = await participant_for(pk, joins[0]["id"], conv1, events)
    stub.chunks = [NOTES_1]
    await p1.write_notes([TranscriptLine("Bob", "Let us move the launch to 12 March."),
                          TranscriptLine("Bob", "I will send the revised budget.")])
    assert [k for k, _ in events] == ["notes_ready"]
    notes_request = stub.requests[-1].body
    assert "You write the notes" in notes_request["messages"][0]["content"]
    assert "Bob: Let us move the launch to 12 March." in notes_request["messages"][1]["content"]
    cid1 = (await Conversation.select(Conversation.conversation_id).where(Conversation.id == conv1).first())
    stored = await conversation_notes(account.id, cid1["conversation_id"])
    assert stored["status"] == "ready" and stored["decisions"] == ["The launch moves to 12 March."]
    assert stored["action_items"] == [{"owner": "Bob", "task": "send the revised budget"}]

    # Occurrence 2: its prompt carries occurrence 1's notes; occurrence 1's prompt carried none.
    conv2 = await open_conversation(account.id, pk, joins[1]["id"])
    p2 = await participant_for(pk, joins[1]["id"], conv2, [])
    assert p1.setup.previous_notes == ()
    stub.chunks = ["Hello again."]
    voice = Voice(p2)
    loop = asyncio.create_task(p2.run())
    try:
        p2.admitted()
        await until(lambda: voice.said == ["Hello again."])
    finally:
        loop.cancel()
        voice.task.cancel()
    system = stub.requests[-1].body["messages"][0]["content"]
    assert "The launch moves to 12 March." in system and "Bob: send the revised budget" in system
    assert "Weekly sync" in system


async def test_a_silent_meeting_gets_no_notes_and_a_failed_llm_says_why(full_pal, stub) -> None:
    account, view, pk = full_pal
    join, conv = await one_meeting(account.id, pk)
    events: list = []
    p = await participant_for(pk, join["id"], conv, events)
    await p.write_notes([TranscriptLine("Anna", "Hello", is_self=True)])
    assert stub.requests == [] and events == []
    stub.mode = "fail"
    await p.write_notes([TranscriptLine("Bob", "Hi")])
    row = await Conversation.select(Conversation.notes_status, Conversation.notes_error).where(
        Conversation.id == conv).first()
    assert row["notes_status"] == "failed" and row["notes_error"].startswith("http 500")
    assert [k for k, _ in events] == ["notes_failed"]


async def test_a_pal_base_url_on_a_private_address_is_refused_unless_allowed(full_pal, stub, monkeypatch) -> None:
    monkeypatch.delenv("LLM_ALLOWED_HOSTS")
    reset_settings()
    _, _, pk = full_pal
    setup = await pipeline.setup_for_run(pk, 0)
    why = await pipeline.endpoint_refusal(setup.llm)
    assert why is not None and "loopback" in why and "LLM_ALLOWED_HOSTS" in why
    monkeypatch.setenv("LLM_ALLOWED_HOSTS", "127.0.0.1")
    reset_settings()
    assert await pipeline.endpoint_refusal(setup.llm) is None


async def test_echo_and_unconfigured_full_pals_do_not_think(clean_db) -> None:
    account, _ = await create_account("acme")
    echo = await pal_service.create_pal(account.id, {"pal_name": "E", "pipeline_mode": "echo"})
    plain = await pal_service.create_pal(account.id, {"pal_name": "F"})
    for view in (echo, plain):
        pk = (await Pal.select(Pal.id).where(Pal.pal_id == view["pal_id"]).first())["id"]
        setup = await pipeline.setup_for_run(pk, 0)
        assert not setup.thinks
    assert plain["pipeline_mode"] == "full"
    assert (await PalEvent.count()) == 0


async def test_loud_meeting_audio_stops_the_answer_before_any_caption(full_pal, stub) -> None:
    from workers.meet_bot.pcm import from_samples, sine, split_pcm

    account, view, pk = full_pal
    join, conv = await one_meeting(account.id, pk)
    p = await participant_for(pk, join["id"], conv, [])
    stub.chunks = ["One. ", "Two. ", "Three. ", "Four. ", "Five."]
    stub.chunk_delay = 0.3
    voice = Voice(p)
    loop = asyncio.create_task(p.run())
    quiet = from_samples([0.0] * 1600)
    loud = split_pcm(from_samples(sine(300, 1.0, amplitude=0.3)), 100)
    try:
        for frame in [quiet] * 5:
            p.on_audio(frame)  # silence in the room: nothing happens
        p.on_caption(Caption("Bob", "Anna, count to five", True, NOW, "b1"))
        await until(lambda: len(voice.said) >= 2, timeout=5)
        assert voice.clears == 0
        for frame in loud:  # Carol starts talking: 1 s of audio, in real time
            p.on_audio(frame)
            await asyncio.sleep(0.1)
            if voice.clears:
                break
        await until(lambda: voice.clears == 1, timeout=2)
    finally:
        loop.cancel()
        voice.task.cancel()
    assert "Five." not in voice.said and p.stats.barge_ins == 1


async def test_a_turn_ends_and_questions_are_answered_while_the_meeting_audio_flows(full_pal, stub) -> None:
    """The tap sends the meeting's audio every few tens of ms: the loop's clock must still tick
    (else a finished turn never ends, and the next question is taken for an interruption)."""
    account, view, pk = full_pal
    join, conv = await one_meeting(account.id, pk)
    p = await participant_for(pk, join["id"], conv, [])
    stub.chunks = ["Fine, thanks."]
    voice = Voice(p)
    loop = asyncio.create_task(p.run())
    quiet = bytes(1600)

    async def room() -> None:
        while True:
            p.on_audio(quiet)
            await asyncio.sleep(0.02)

    audio = asyncio.create_task(room())
    try:
        p.on_caption(Caption("Bob", "Anna, how are you?", True, NOW, "b1"))
        await until(lambda: voice.said == ["Fine", "thanks."])
        await until(lambda: not p.policy.talking, timeout=3)
        p.on_caption(Caption("Bob", "Anna, and the budget?", False, NOW, "b2"))
        p.on_caption(Caption("Bob", "Anna, and the budget?", True, NOW, "b2"))
        await until(lambda: len(voice.said) == 4, timeout=5)
    finally:
        audio.cancel()
        loop.cancel()
        voice.task.cancel()
    assert p.stats.barge_ins == 0 and voice.clears == 0
