"""CHAT: the pure chat tracker, message splitting, and the command router (commands.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

from workers.meet_bot.channels import Clear, SendChat, Say
from workers.meet_bot.chat import ChatTracker, split_message
from workers.meet_bot.commands import CallbackPump, CommandRouter


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2030, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.t

    def advance(self, s: float) -> None:
        self.t += timedelta(seconds=s)


def msg(mid: str, sender: str, text: str) -> dict[str, str]:
    return {"id": mid, "sender": sender, "time": "10:01 AM", "text": text}


def test_participant_message_once_by_id() -> None:
    tr = ChatTracker("Anna PAL", Clock())
    m = tr.receive(msg("m1", "Bob", "hello  there"))
    assert m is not None and (m.sender, m.text, m.self) == ("Bob", "hello there", False)
    assert tr.receive(msg("m1", "Bob", "hello there")) is None


def test_same_sender_and_text_within_two_seconds_is_a_duplicate() -> None:
    clock = Clock()
    tr = ChatTracker("Anna PAL", clock)
    assert tr.receive(msg("m1", "Bob", "hi")) is not None
    clock.advance(1.0)
    assert tr.receive(msg("m2", "Bob", "hi")) is None  # re-rendered with a new id
    clock.advance(2.5)
    assert tr.receive(msg("m3", "Bob", "hi")) is not None  # said again later: a new message
    assert tr.receive(msg("m4", "Carol", "hi")) is not None


def test_own_message_matched_by_sent_text_once() -> None:
    clock = Clock()
    tr = ChatTracker("Anna PAL", clock)
    tr.sent("Hello from the PAL")
    clock.advance(0.4)
    m = tr.receive(msg("m9", "", "Hello from the PAL"))
    assert m is not None and (m.sender, m.self) == ("Anna PAL", True)
    clock.advance(10)
    assert tr.expire() == []  # already reported


def test_header_less_message_not_sent_by_us_is_not_self() -> None:
    tr = ChatTracker("Anna PAL", Clock())
    m = tr.receive(msg("m1", "", "something"))
    assert m is not None and m.self is False


def test_sent_but_never_shown_is_reported_from_the_send_once() -> None:
    clock = Clock()
    tr = ChatTracker("Anna PAL", clock)
    tr.sent("ping")
    clock.advance(1)
    assert tr.expire() == []
    clock.advance(5)
    [m] = tr.expire()
    assert (m.sender, m.text, m.self) == ("Anna PAL", "ping", True)
    assert tr.expire() == []
    assert tr.receive(msg("late", "", "ping")) is None  # shows up late: not reported twice


def test_split_message() -> None:
    assert split_message("short") == ["short"]
    words = " ".join(["abcdefghi"] * 120)  # 1199 characters
    parts = split_message(words)
    assert all(len(p) <= 500 for p in parts) and " ".join(parts) == words
    assert split_message("x" * 1200) == ["x" * 500, "x" * 500, "x" * 200]
    assert split_message("   ") == []


async def test_router_dispatches_by_type_and_lanes_do_not_block_each_other() -> None:
    q: asyncio.Queue[object] = asyncio.Queue()
    router = CommandRouter(q)
    seen: list[str] = []
    gate = asyncio.Event()

    async def chat(cmd: SendChat) -> None:
        await gate.wait()
        seen.append("chat:" + cmd.text)

    def speech(cmd: object) -> None:
        seen.append(type(cmd).__name__)

    def broken(cmd: object) -> None:
        raise ValueError("boom")

    router.register(SendChat, chat, lane="chat")
    router.register(Say, speech, lane="speech")
    router.register(Clear, broken, lane="speech")
    router.start()
    for cmd in (SendChat("a"), Say("x"), Clear(), SendChat("b"), object()):
        q.put_nowait(cmd)
    await asyncio.sleep(0.05)
    assert seen == ["Say"]  # the chat lane waits, speech went ahead
    gate.set()
    await asyncio.sleep(0.05)
    assert seen == ["Say", "chat:a", "chat:b"]
    assert router.stats.errors == 1 and router.stats.unhandled == 1 and router.stats.handled == 3
    await router.close()


async def test_callback_pump_survives_a_failing_callback() -> None:
    got: list[int] = []

    async def cb(x: int) -> None:
        if x == 2:
            raise RuntimeError("no")
        got.append(x)

    pump: CallbackPump[int] = CallbackPump(cb, maxlen=10)
    for i in range(5):
        pump.put(i)
    await pump.close()
    assert got == [0, 1, 3, 4] and pump.errors == 1
