"""The built-in full pipeline: a PAL that hears, thinks and speaks in the meeting on its own.

One ``Participant`` per bot run of a `full` PAL (workers/joins.py). It sits on the bot's
media channels (workers/meet_bot/channels.py) beside the relay:

* **hear**: caption lines and chat messages come in through ``on_caption`` / ``on_chat``, the
  meeting's audio through ``on_audio`` (only loud or not, for barge-in)
  (plain callbacks that only queue), the PAL's own words through ``on_self_speech``;
* **decide**: app/domain/turn_taking.TurnPolicy says when to greet, answer or stop;
* **think**: app/services/llm.stream_reply, streamed, bounded by the PAL's answer timeout;
* **speak**: each sentence as soon as it is complete (app/domain/speech_text), as a ``Say``
  command, cut at LLM_MAX_ANSWER_CHARS; barge-in cancels the stream and sends ``Clear``;
* **notes**: ``write_notes`` when the PAL has left (app/services/notes.py).

An LLM that is down, slow or talks garbage never stops the bot: the turn ends, an event
says why (``llm_unavailable``), the PAL apologises once if it was addressed, and the next
turn tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from array import array
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.clock import utcnow
from app.config import get_settings
from app.domain.meeting_prompt import TranscriptLine, build_messages, notes_prompt
from app.domain.speech_text import cap_answer, clean_for_speech, speakable_sentences
from app.domain.turn_taking import Act, Decision, TurnPolicy, addresses
from app.services import llm as llm_client
from app.services import notes as notes_store
from app.services.pipeline import PipelineSetup
from workers.meet_bot.pcm import rms
from workers.meet_bot.channels import Caption, ChatMessage, Clear, Say, SendChat, SpeakAudio

log = logging.getLogger(__name__)

RecordEvent = Callable[[str, dict[str, Any]], Awaitable[Any]]
TICK_SECONDS = 0.1
INBOX_SIZE = 1000
TRANSCRIPT_LINES = 400  # kept in memory for the prompt (the budget trims further)
MAX_ANSWER_TOKENS = 400
APOLOGY = "Sorry, I can't answer that right now."
MAX_CHAT_ANSWER_CHARS = 500
SPOKEN_WAIT_SECONDS = 120  # a turn whose audio never reports its end is over after this
# The first words go to the voice at the first comma once there are this many characters:
# a short clause is synthesised and heard while the rest of the sentence is generated.
FIRST_CLAUSE_CHARS = 4
# Meeting audio at least this loud (RMS, full scale 1.0; about -34 dBFS) counts as someone talking.
LOUD_RMS = 0.02
OPEN_MIC_SILENCE = bytes(640)  # 20 ms of 16 kHz s16le
GREETING = ("You have just been admitted to the meeting. Greet the attendees in one or two short "
            "sentences, as your instructions say.")


def frame_rms(pcm: bytes) -> float:
    """RMS of a 16-bit PCM frame, full scale 1.0 (every 4th sample: enough for loud or not)."""
    return rms(array("h", pcm[: len(pcm) // 2 * 2])[::4]) / 32768


def answer_instruction(decision: Decision) -> str:
    who = decision.speaker or "someone"
    if decision.why == "addressed":
        return f"{who} just spoke to you. Answer them briefly, in a few spoken sentences."
    return (f"{who} asked a question and nobody answered. If you can help, answer briefly; "
            "otherwise say in one sentence that you do not know.")


@dataclass
class ParticipantStats:
    turns: int = 0
    sentences: int = 0
    barge_ins: int = 0
    llm_failures: int = 0
    chat_answers: int = 0
    dropped: int = 0
    first_audio_s: float | None = None  # last turn: decision -> first sentence handed to the voice


class Participant:
    """The full pipeline for one run; ``run()`` is its task, the ``on_*`` methods its inputs."""

    def __init__(self, setup: PipelineSetup, commands: asyncio.Queue[Any], *, conversation_pk: int,
                 conversation_id: str, record_event: RecordEvent,
                 fallback_greeting: Callable[[], Awaitable[None]] | None = None,
                 clock: Callable[[], float] = time.monotonic, now: Callable[[], datetime] = utcnow) -> None:
        assert setup.llm is not None, "a participant needs an LLM"
        self.setup = setup
        self.llm = setup.llm
        self.commands = commands  # the bot's command queue (MediaChannels.commands)
        self.conversation_pk = conversation_pk
        self.conversation_id = conversation_id
        self.record_event = record_event
        self.fallback_greeting = fallback_greeting
        self.clock = clock
        self.now = now
        self.policy = TurnPolicy(setup.pal_name)
        self.stats = ParticipantStats()
        self.transcript: deque[TranscriptLine] = deque(maxlen=TRANSCRIPT_LINES)
        self.inbox: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(INBOX_SIZE)
        self.voice_busy = False
        self.voice_idle = asyncio.Event()
        self.voice_idle.set()
        self.spoken = 0  # self-speech reports seen (one per Say, when its audio starts)
        self._turn: asyncio.Task[None] | None = None
        self._chat_tasks: set[asyncio.Task[None]] = set()
        self._reported: set[str] = set()
        self.settings = get_settings()

    # --- inputs (never block, never raise) ------------------------------------------------------
    def _put(self, kind: str, value: Any) -> None:
        try:
            self.inbox.put_nowait((kind, value))
        except asyncio.QueueFull:
            self.stats.dropped += 1

    def on_caption(self, caption: Caption) -> None:
        self._put("caption", caption)

    def on_chat(self, message: ChatMessage) -> None:
        self._put("chat", message)

    def on_audio(self, pcm: bytes) -> None:
        """A frame of the meeting's audio (never the PAL's own): loud or not, for barge-in."""
        self._put("audio", frame_rms(pcm) >= LOUD_RMS)

    def on_self_speech(self, text: str, at: datetime) -> None:
        self.spoken += 1
        self.transcript.append(TranscriptLine(self.setup.pal_name, text, is_self=True))

    def on_speaking(self, busy: bool) -> None:
        self.voice_busy = busy
        if busy:
            self.voice_idle.clear()
        else:
            self.voice_idle.set()

    def admitted(self) -> None:
        self._put("admitted", None)

    # --- the loop -------------------------------------------------------------------------------
    async def run(self) -> None:
        next_tick = self.clock()
        while True:
            try:
                kind, value = await asyncio.wait_for(self.inbox.get(), max(0.0, next_tick - self.clock()))
            except TimeoutError:
                kind, value = "tick", None
            # The meeting's audio arrives every few tens of ms, so the clock's turn (a turn that
            # ended, a pause after a question) must come on time whatever else is queued.
            steps = [(kind, value)] if kind != "tick" else []
            if self.clock() >= next_tick:
                next_tick = self.clock() + TICK_SECONDS
                steps.append(("tick", None))
            for step in steps:
                try:
                    self._act(self._decide(*step))
                except Exception:  # a bug here must not take the bot down with it
                    log.exception("conversation %s: participant step failed", self.conversation_id)

    def _decide(self, kind: str, value: Any) -> Decision | None:
        now = self.clock()
        if kind == "admitted":
            return self.policy.admitted(now)
        if kind == "caption":
            cap: Caption = value
            if cap.final:
                self.transcript.append(TranscriptLine(cap.speaker, cap.text))
            return self.policy.caption(cap.line_id or cap.speaker, cap.speaker, cap.text, cap.final, now)
        if kind == "chat":
            self._chat(value)
            return None
        if kind == "audio":
            return self.policy.heard(value, now)
        if self._turn is None or self._turn.done():
            if self.policy.talking and self._turn is not None:
                self.policy.finished(now)  # the turn task ended: its end is the policy's too
                self._turn = None
            return self.policy.tick(now)
        return None

    def _act(self, decision: Decision | None) -> None:
        if decision is None:
            return
        if decision.act is Act.BARGE_IN:
            self.stats.barge_ins += 1
            if self._turn is not None:
                self._turn.cancel()
                self._turn = None
            self._command(Clear())
            log.info("conversation %s: %s spoke; the PAL stops talking", self.conversation_id, decision.speaker)
            return
        self.stats.turns += 1
        # 20 ms of silence makes the voice busy at once, so the mic comes on (a click, and Meet's
        # new track) while the LLM thinks instead of after the first sentence is ready.
        self._command(SpeakAudio(OPEN_MIC_SILENCE))
        self._turn = asyncio.create_task(self._take_turn(decision), name="participant-turn")

    def _command(self, command: Any) -> bool:
        try:
            self.commands.put_nowait(command)
            return True
        except asyncio.QueueFull:
            return False

    # --- a turn ---------------------------------------------------------------------------------
    def _messages(self, instruction: str) -> list[dict[str, str]]:
        return build_messages(self.setup.system_prompt, meeting=self.setup.meeting, transcript=list(self.transcript),
                              previous_notes=self.setup.previous_notes, pal_name=self.setup.pal_name,
                              instruction=instruction)

    async def _take_turn(self, decision: Decision) -> None:
        started = self.clock()
        instruction = GREETING if decision.act is Act.GREET else answer_instruction(decision)
        queued, spoken_before = 0, self.spoken
        try:
            budget = self.settings.llm_max_answer_chars
            tokens = llm_client.stream_reply(
                self._messages(instruction), model=self.llm.model, base_url=self.llm.base_url,
                api_key=self.llm.api_key, timeout=self.llm.timeout, deadline=self.llm.timeout * 2,
                max_tokens=MAX_ANSWER_TOKENS)
            async for sentence in speakable_sentences(tokens, first_clause_chars=FIRST_CLAUSE_CHARS):
                sentence = cap_answer(sentence, budget)
                if not sentence:
                    continue
                if queued == 0:
                    self.stats.first_audio_s = self.clock() - started
                if not self._command(Say(sentence)):
                    break
                queued += 1
                self.stats.sentences += 1
                budget -= len(sentence) + 1
                if budget <= 0:
                    break  # a sane length: the rest of the answer is not spoken
            if queued == 0:
                raise llm_client.LlmUnavailable("malformed response: nothing to say")
        except llm_client.LlmUnavailable as exc:
            self.stats.llm_failures += 1
            await self._event("llm_unavailable", reason=exc.reason, act=str(decision.act))
            if decision.act is Act.GREET and self.fallback_greeting is not None:
                await self.fallback_greeting()
            elif decision.why == "addressed":
                self._command(Say(APOLOGY))
                queued = 1
        if queued:
            await self._until_spoken(spoken_before + queued)

    async def _until_spoken(self, reports: int) -> None:
        """Wait until every queued sentence started playing and the voice went quiet."""
        end = self.clock() + SPOKEN_WAIT_SECONDS
        while self.spoken < reports and self.clock() < end:
            await asyncio.sleep(0.05)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.voice_idle.wait(), max(0.0, end - self.clock()))

    async def _event(self, kind: str, **payload: Any) -> None:
        try:
            await self.record_event(kind, {"conversation_id": self.conversation_id, **payload})
        except Exception as exc:  # the event log being down must not stop the meeting
            log.warning("conversation %s: could not record %s: %r", self.conversation_id, kind, exc)

    # --- chat -----------------------------------------------------------------------------------
    def _chat(self, message: ChatMessage) -> None:
        if message.self:
            return
        self.transcript.append(TranscriptLine(message.sender, message.text, kind="chat"))
        if not addresses(message.text, self.policy.names):
            return
        if not self.policy.chat_allowed(self.clock()):
            return
        task = asyncio.create_task(self._chat_answer(message))
        self._chat_tasks.add(task)
        task.add_done_callback(self._chat_tasks.discard)

    async def _chat_answer(self, message: ChatMessage) -> None:
        instruction = (f"{message.sender or 'Someone'} wrote to you in the meeting's chat. Answer in the chat "
                       "with one short message of plain text.")
        try:
            text = await llm_client.complete(
                self._messages(instruction), model=self.llm.model, base_url=self.llm.base_url,
                api_key=self.llm.api_key, timeout=self.llm.timeout, deadline=self.llm.timeout * 2,
                max_tokens=MAX_ANSWER_TOKENS)
        except llm_client.LlmUnavailable as exc:
            self.stats.llm_failures += 1
            await self._event("llm_unavailable", reason=exc.reason, act="chat")
            return
        text = cap_answer(clean_for_speech(text), MAX_CHAT_ANSWER_CHARS)
        if text and self._command(SendChat(text)):
            self.stats.chat_answers += 1

    # --- the end --------------------------------------------------------------------------------
    async def close(self) -> None:
        for task in [self._turn, *self._chat_tasks]:
            if task is not None:
                task.cancel()

    async def write_notes(self, lines: list[TranscriptLine]) -> None:
        """The meeting's notes from `lines` (the stored transcript), stored and announced."""
        if not any(not line.is_self for line in lines):
            return  # nobody said anything: nothing to note
        await notes_store.mark_writing(self.conversation_pk)
        try:
            text = await llm_client.complete(
                notes_prompt(lines, meeting=self.setup.meeting), model=self.llm.model, base_url=self.llm.base_url,
                api_key=self.llm.api_key, timeout=self.settings.llm_timeout, deadline=self.settings.llm_timeout * 2,
                max_tokens=1500)
        except llm_client.LlmUnavailable as exc:
            await notes_store.failed(self.conversation_pk, exc.reason, now=self.now())
            await self._event("notes_failed", reason=exc.reason)
            return
        notes = await notes_store.store(self.conversation_pk, text, now=self.now())
        await self._event("notes_ready", decisions=len(notes["decisions"]), action_items=len(notes["action_items"]))
