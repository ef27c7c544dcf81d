"""READ and CHAT end to end: real Chromium, the look-alike's captions region and chat panel.

The look-alike scripts caption rows that grow, get rewritten, re-rendered and removed, a "You"
row (the PAL's own speech) and a join notice in Meet's announcer region; and a participant chat
message. The bot must report each caption line once as final with its speaker (partials before
it), never the "You" row or the notice, the chat message via on_chat, and send SendChat
commands from the queue as the PAL, each coming back once as on_chat(self=True).
"""

from __future__ import annotations

import asyncio

import pytest

from tests.integration.test_meet_bot import CHROMIUM, media, new_code, no_leftovers, pytestmark, settings  # noqa: F401
from tests.meet_lookalike import MeetLookalike
from workers.meet_bot import BotResult, FaceMedia, run_meet_bot
from workers.meet_bot.channels import Caption, ChatMessage, MediaChannels, SendChat

BOB = "Bob Smith"
CAROL = "Carol Jones"
CAPTIONS = [
    {"at": 0.3, "notice": f"{CAROL} joined"},
    {"at": 0.5, "row": "r1", "speaker": BOB, "text": "Hello"},
    {"at": 0.8, "row": "r1", "speaker": BOB, "text": "Hello every"},
    {"at": 1.1, "row": "r1", "speaker": BOB, "text": "Hello everyone this is"},
    {"at": 1.4, "row": "r1", "speaker": BOB, "text": "Hello everyone, this is the weekly sync."},
    {"at": 1.6, "row": "me", "speaker": "You", "text": "I am the PAL speaking"},
    {"at": 3.0, "rerender": True, "gap": 0.3},  # Meet re-renders: the same rows as new nodes
    {"at": 4.0, "row": "r2", "speaker": CAROL, "text": "Thanks Bob"},
    {"at": 4.3, "row": "r1", "remove": True},
    {"at": 4.4, "row": "r2", "speaker": CAROL, "text": "Thanks Bob, let's start"},
    {"at": 4.6, "notice": f"{BOB} left the meeting"},
]
LONG = " ".join(f"part{i:03d}" for i in range(75))  # 599 characters: two messages


async def test_captions_and_chat(meet_lookalike: MeetLookalike, lookalike_browser_args: str,
                                 media: FaceMedia, monkeypatch: pytest.MonkeyPatch) -> None:
    # The PAL's messages must come back from the chat panel, not from the send-side fallback.
    monkeypatch.setattr("workers.meet_bot.chat.CONFIRM_WITHIN", 60.0)
    code = new_code()
    url = meet_lookalike.configure(code, "stay", admit_after=0.5, captions=CAPTIONS,
                                   chat=[{"at": 1.0, "sender": CAROL, "text": "The agenda is in the doc"}])
    captions: list[Caption] = []
    chats: list[ChatMessage] = []

    async def on_chat(m: ChatMessage) -> None:  # async callbacks are awaited
        chats.append(m)

    channels = MediaChannels(on_caption=captions.append, on_chat=on_chat)
    # Queued before the bot even joins: sent once the chat panel is open.
    channels.commands.put_nowait(SendChat("Hi, I am Anna's PAL"))
    channels.commands.put_nowait(SendChat(LONG))
    stop = asyncio.Event()

    async def on_status(status: str, reason: str | None) -> None:
        if status == "in_call":
            asyncio.get_running_loop().call_later(9.0, stop.set)

    result = await asyncio.wait_for(
        run_meet_bot(url, "Anna PAL", media, settings(lookalike_browser_args), on_status=on_status,
                     stop=stop, channels=channels), timeout=70)
    record = meet_lookalike.record(code)
    assert result == BotResult("left", "stopped")
    assert record.captions_on

    print("READ:", [(c.speaker, c.text, c.final, c.line_id) for c in captions])
    print("CHAT:", [(m.sender, m.text[:40], m.self) for m in chats])
    finals = [(c.speaker, c.text) for c in captions if c.final]
    assert finals == [(BOB, "Hello everyone, this is the weekly sync."), (CAROL, "Thanks Bob, let's start")], captions
    bob_line = next(c.line_id for c in captions if c.final and c.speaker == BOB)
    bob_partials = [c for c in captions if c.line_id == bob_line and not c.final]
    assert bob_partials and bob_partials[0].text.startswith("Hello")
    assert all(c.speaker == BOB for c in bob_partials)
    assert captions.index(bob_partials[-1]) < captions.index(next(c for c in captions if c.line_id == bob_line and c.final))
    assert len([c for c in captions if c.final and c.line_id == bob_line]) == 1
    assert not any(c.speaker == "You" or "PAL speaking" in c.text for c in captions)
    assert not any("joined" in c.text or "left the meeting" in c.text for c in captions)

    # Chat: the participant's message once; the PAL's messages in the page and back once as self.
    received = [m for m in chats if not m.self]
    assert [(m.sender, m.text) for m in received] == [(CAROL, "The agenda is in the doc")]
    assert record.chat_sent[0] == "Hi, I am Anna's PAL"
    assert len(record.chat_sent) == 3 and all(len(t) <= 500 for t in record.chat_sent)
    assert " ".join(record.chat_sent[1:]) == LONG
    own = [m for m in chats if m.self]
    assert [m.text for m in own] == record.chat_sent
    assert all(m.sender == "Anna PAL" for m in own)


async def test_without_channels_nothing_is_clicked(meet_lookalike: MeetLookalike, lookalike_browser_args: str,
                                                   media: FaceMedia) -> None:
    code = new_code()
    url = meet_lookalike.configure(code, "stay", admit_after=0.5, captions=CAPTIONS,
                                   chat=[{"at": 0.5, "sender": CAROL, "text": "hello"}])
    stop = asyncio.Event()

    async def on_status(status: str, reason: str | None) -> None:
        if status == "in_call":
            asyncio.get_running_loop().call_later(2.0, stop.set)

    result = await asyncio.wait_for(
        run_meet_bot(url, "Anna PAL", media, settings(lookalike_browser_args), on_status=on_status, stop=stop),
        timeout=60)
    record = meet_lookalike.record(code)
    assert result == BotResult("left", "stopped")
    assert not record.captions_on
    assert "chat_panel" not in record.event_names()
