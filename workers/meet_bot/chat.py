"""CHAT: read the meeting's chat and send messages as the PAL (pure tracker + CDP channel).

``ChatTracker`` (pure, injectable clock) decides what a message the page reports means:
dedup by message id and by (sender, text) within 2 s; the PAL's own messages (no group header,
so no sender) are recognised by matching recently sent text and come out once as
``ChatMessage(self=True)``; a sent message the panel never shows within ``confirm_within`` s is
reported from the send instead (and swallowed if it shows up later). ``split_message`` cuts
text into messages of at most 500 characters, at word boundaries where possible.

``ChatChannel`` is the I/O: binding + page script (chat_js.py), opening the panel once in the
call ("Chat with everyone", then wait for the "Send a message" textarea) and the SendChat
handler for commands.CommandRouter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nodriver import cdp

from . import chat_js
from .channels import ChatMessage, SendChat
from .commands import CallbackPump
from .models import utcnow

log = logging.getLogger(__name__)

DEDUP_WINDOW = 2.0  # s: the same (sender, text) again is the same message
OWN_WINDOW = 60.0  # s: a header-less message matching sent text within this is the PAL's
CONFIRM_WITHIN = 5.0  # s: report a sent message ourselves if the panel has not shown it by then
SELF_SENDERS = ("", "you")


def _norm(s: Any) -> str:
    return re.sub(r"\s+", " ", str(s or "")).strip()


def split_message(text: str, limit: int = chat_js.MAX_CHARS) -> list[str]:
    """`text` as messages of at most `limit` characters, split at whitespace when possible."""
    text = text.strip()
    out: list[str] = []
    while len(text) > limit:
        cut = text.rfind(" ", 0, limit + 1)
        if cut < limit // 2:
            cut = limit
        out.append(text[:cut].rstrip())
        text = text[cut:].lstrip()
    if text:
        out.append(text)
    return out


@dataclass
class _Sent:
    text: str
    at: datetime
    reported: bool = False  # on_chat(self=True) was emitted
    seen: bool = False  # the panel showed it


class ChatTracker:
    def __init__(self, display_name: str, clock: Callable[[], datetime] = utcnow, *,
                 dedup_window: float = DEDUP_WINDOW, own_window: float = OWN_WINDOW,
                 confirm_within: float | None = None) -> None:
        self.name = display_name
        self.clock = clock
        self.dedup_window = dedup_window
        self.own_window = own_window
        self.confirm_within = CONFIRM_WITHIN if confirm_within is None else confirm_within
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._recent: deque[tuple[str, str, datetime]] = deque(maxlen=200)
        self._sent: deque[_Sent] = deque(maxlen=100)
        self.duplicates = 0

    def sent(self, text: str) -> None:
        """The PAL just sent `text` (one message, as typed)."""
        self._sent.append(_Sent(_norm(text), self.clock()))

    def receive(self, msg: dict[str, Any]) -> ChatMessage | None:
        """A message the page reported ({id, sender, time, text}); None when it is not news."""
        now = self.clock()
        mid, sender, text = str(msg.get("id") or ""), _norm(msg.get("sender")), _norm(msg.get("text"))
        if not text:
            return None
        if mid:
            if mid in self._ids:
                self.duplicates += 1
                return None
            self._ids[mid] = None
            while len(self._ids) > 5000:
                self._ids.popitem(last=False)
        # The PAL's own messages carry no header (sender ""); Meet may also label them "You".
        mine = sender.lower() in SELF_SENDERS or sender == self.name
        own = self._match_sent(text, now) if mine else None
        key_sender = self.name if own is not None else sender
        for s, t, at in self._recent:
            if s == key_sender and t == text and (now - at).total_seconds() <= self.dedup_window:
                self.duplicates += 1
                return None
        self._recent.append((key_sender, text, now))
        if own is not None:
            if own.reported:
                return None
            own.reported = True
            return ChatMessage(self.name, text, now, True)
        return ChatMessage(sender, text, now, False)

    def _match_sent(self, text: str, now: datetime) -> _Sent | None:
        for s in self._sent:
            if s.text == text and not s.seen and (now - s.at).total_seconds() <= self.own_window:
                s.seen = True
                return s
        return None

    def expire(self) -> list[ChatMessage]:
        """Sent messages the panel did not show in time, reported from the send (once)."""
        now = self.clock()
        out: list[ChatMessage] = []
        for s in self._sent:
            if not s.reported and (now - s.at).total_seconds() >= self.confirm_within:
                s.reported = True
                out.append(ChatMessage(self.name, s.text, s.at, True))
        return out


class ChatChannel:
    """Chat in the page: reading through a binding, sending on SendChat commands."""

    def __init__(self, display_name: str, on_chat: Callable[[ChatMessage], Any] | None, *,
                 clock: Callable[[], datetime] = utcnow, ready_timeout: float = 60.0) -> None:
        self.tracker = ChatTracker(display_name, clock)
        self.pump: CallbackPump[ChatMessage] = CallbackPump(on_chat, name="meet-chat")
        self.ready = asyncio.Event()  # set once the panel was opened in the call
        self.ready_timeout = ready_timeout
        self.bad = 0
        self.sent_parts = 0
        self._session: Any = None
        self._ticker: asyncio.Task[None] | None = None

    async def install(self, session: Any) -> None:
        """Before navigating: binding, handler and the page script."""
        self._session = session
        session.tab.add_handler(cdp.runtime.BindingCalled, self._on_binding)
        await session.cdp(cdp.page.enable())
        await session.cdp(cdp.runtime.enable())
        await session.cdp(cdp.runtime.add_binding(chat_js.BINDING))
        await session.cdp(cdp.page.add_script_to_evaluate_on_new_document(chat_js.READ_SCRIPT))
        self._ticker = asyncio.create_task(self._tick(), name="meet-chat-tick")

    def _on_binding(self, event: Any, _connection: Any = None) -> None:
        if event.name != chat_js.BINDING:
            return
        try:
            data = json.loads(event.payload)
            assert isinstance(data, dict) and data.get("k") == "chat"
        except (ValueError, AssertionError):
            self.bad += 1
            return
        msg = self.tracker.receive(data)
        if msg is not None:
            self.pump.put(msg)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for msg in self.tracker.expire():
                self.pump.put(msg)

    async def open(self, session: Any, *, tries: int = 4, wait: float = 3.0) -> bool:
        """Open the chat panel and wait for its textarea; sets `ready` on success."""
        loop = asyncio.get_running_loop()
        for _ in range(tries):
            state = await session.evaluate(chat_js.OPEN_JS)
            if state == "open":
                self.ready.set()
                return True
            if state == "clicked":
                end = loop.time() + wait
                while loop.time() < end:
                    await asyncio.sleep(0.2)
                    if await session.evaluate(chat_js.IS_OPEN_JS) == "open":
                        self.ready.set()
                        return True
            else:
                await asyncio.sleep(0.5)
        return False

    async def send(self, cmd: SendChat) -> None:
        """The SendChat handler: as the PAL, in messages of at most 500 characters."""
        session = self._session
        if session is None:
            raise RuntimeError("chat not installed")
        await asyncio.wait_for(self.ready.wait(), self.ready_timeout)
        for part in split_message(cmd.text):
            if await session.evaluate(chat_js.IS_OPEN_JS) != "open":
                await self.open(session)  # someone closed the panel
            result = await session.evaluate(chat_js.send_js(part))
            if result == "no_button":  # Enter as fallback: a trusted key press through CDP
                for kind in ("keyDown", "keyUp"):
                    await session.cdp(cdp.input_.dispatch_key_event(
                        kind, key="Enter", code="Enter", windows_virtual_key_code=13,
                        native_virtual_key_code=13, text="\r" if kind == "keyDown" else None))
            elif result != "clicked":
                raise RuntimeError(f"chat: could not send ({result})")
            self.tracker.sent(part)
            self.sent_parts += 1
            await asyncio.sleep(0.1)

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(BaseException):
                await self._ticker
        if self._session is not None:
            with contextlib.suppress(Exception):
                self._session.tab.remove_handler(cdp.runtime.BindingCalled, self._on_binding)
        await self.pump.close()
