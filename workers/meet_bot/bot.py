"""run_meet_bot: join a Google Meet as a PAL and stay until there is a reason to leave.

Transport-independent: no DB, no queue. The caller passes callbacks and gets a BotResult.
The page is read by polling a JS probe (meet_page.PROBE_JS) and the rules in meet_page
decide what each snapshot means; this module only sequences pre-join -> lobby -> call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from datetime import datetime, timezone
from urllib.parse import urlsplit, urlunsplit

from . import meet_page as mp
from .browser import BrowserGone, ChromiumSession
from .captions import CaptionReader
from .channels import MediaChannels, SendChat
from .chat import ChatChannel
from .commands import CommandRouter
from .media_bridge import AudioSink, AudioTap
from .models import BotResult, BotSettings, FaceMedia, utcnow
from .speak import Speaker

log = logging.getLogger(__name__)

StatusCallback = Callable[[str, str | None], Awaitable[None]]

# A page that cannot be read for this long is treated as a crashed browser.
UNRESPONSIVE_AFTER = 25.0
# In the call but the call UI is gone (and no known end screen) for this long: the call is over.
CALL_UI_GONE_AFTER = 30.0
# Re-click the join button if the page did not move on after this long.
JOIN_RECLICK_AFTER = 6.0
LEAVE_CONFIRM_TIMEOUT = 3.0

_FAILED_PHASES = {
    mp.Phase.DENIED: "denied",
    mp.Phase.NO_RESPONSE: "no_response",
    mp.Phase.BLOCKED: "blocked",
    mp.Phase.INVALID: "invalid_meeting",
    mp.Phase.SIGN_IN: "sign_in_required",
    mp.Phase.UNREACHABLE: "meeting_unreachable",
}
_LEFT_PHASES = {mp.Phase.ENDED: "meeting_ended", mp.Phase.REMOVED: "removed"}


async def run_meet_bot(
    meeting_url: str,
    display_name: str,
    media: FaceMedia,
    settings: BotSettings,
    *,
    on_status: StatusCallback,
    leave_at: datetime | None = None,
    stop: asyncio.Event | None = None,
    clock: Callable[[], datetime] = utcnow,
    audio_sink: AudioSink | None = None,
    channels: MediaChannels | None = None,
) -> BotResult:
    """Join `meeting_url` as `display_name` showing `media`; return how it ended.

    on_status gets "joining", "waiting_room" and "in_call" (reason None) as they happen, never the
    final outcome, which is the return value. leave_at is UTC (naive values are taken as UTC) and
    compared with clock(); setting `stop` makes the PAL leave with reason "stopped". Chromium and its profile are gone when this returns,
    raises or is cancelled.

    audio_sink, when given, receives the meeting's remote audio (never the PAL's own) as 16 kHz
    mono int16 LE PCM frames of at most 100 ms (media_bridge.AudioTap); it may be sync or async
    and a slow one loses the oldest frames instead of stalling the bot. None installs nothing.

    channels (channels.MediaChannels) carries all four live channels: its on_audio is used as
    audio_sink when that is not given; captions, chat and the PAL's voice come and go through it.
    """
    if channels is not None and audio_sink is None:
        audio_sink = channels.on_audio
    if leave_at is not None and leave_at.tzinfo is None:
        leave_at = leave_at.replace(tzinfo=timezone.utc)  # naive means UTC, as documented
    await on_status("joining", None)
    try:
        async with ChromiumSession(settings, media) as session:
            # SPEAK: with channels, the mic is the injected one (speak.py), managed once in the call.
            speaker = Speaker(channels, settings.voice, synth=settings.synth,
                              mic_off_after=settings.mic_off_after) if channels is not None else None
            router = CommandRouter(channels.commands) if channels is not None else None
            status_cb = on_status
            if speaker is not None:
                async def status_cb(status: str, reason: str | None) -> None:
                    if status == "in_call":
                        speaker.admitted()
                    await on_status(status, reason)
            # READ + CHAT: readers installed before navigating; captions on, chat open once in the call.
            captions = CaptionReader(channels.on_caption) if channels is not None else None
            chat = ChatChannel(display_name, channels.on_chat) if channels is not None else None
            read_setup: list[asyncio.Task[None]] = []
            if captions is not None and chat is not None:
                before_read = status_cb

                async def status_read(status: str, reason: str | None) -> None:
                    if status == "in_call" and not read_setup:
                        read_setup.append(asyncio.create_task(
                            _read_chat_setup(session, captions, chat, channels.on_problem)))
                    await before_read(status, reason)
                status_cb = status_read
            flow = _Flow(session, meeting_url, display_name, settings, status_cb,
                         leave_at, stop or asyncio.Event(), clock)
            tap = AudioTap(audio_sink) if audio_sink is not None else None
            try:
                if tap is not None:
                    await tap.install(session)  # before navigating: the hook must precede Meet's scripts
                if speaker is not None and router is not None:
                    await speaker.install(session)  # before navigating, like the tap
                    speaker.register(router)
                    speaker.start()
                if captions is not None and chat is not None and router is not None:
                    await captions.install(session)
                    await chat.install(session)
                    router.register(SendChat, chat.send, lane="chat")
                if router is not None:
                    router.start()
                return await flow.run()
            except BrowserGone as exc:
                tail = "\n".join(list(session.stderr_tail)[-15:])
                log.warning("meet bot: browser crash: %s; chromium stderr tail:\n%s", exc, tail)
                return BotResult.failed("browser_crash")
            finally:
                for task in read_setup:
                    task.cancel()
                if router is not None:
                    await router.close()
                if captions is not None and chat is not None:
                    await captions.close()
                    await chat.close()
                if speaker is not None:
                    await speaker.close()
                if tap is not None:
                    await tap.close()
    except BrowserGone as exc:  # Chromium never started
        log.warning("meet bot: browser crash: %s", exc)
        return BotResult.failed("browser_crash")


async def _read_chat_setup(session: ChromiumSession, captions: CaptionReader, chat: ChatChannel,
                           on_problem: Callable[[str, str], Any] | None = None) -> None:
    """Once in the call: turn captions on and open the chat panel (best effort, logged).

    Captions that cannot be turned on (off by policy, no button) are reported through
    `on_problem`: the PAL cannot hear what is said, and the conversation says so."""
    try:
        if not await captions.turn_on(session):
            log.warning("meet bot: could not turn captions on")
            if on_problem is not None:
                with contextlib.suppress(Exception):
                    result = on_problem("captions_unavailable", "Meet's captions could not be turned on")
                    if asyncio.iscoroutine(result):
                        await result
        if not await chat.open(session):
            log.warning("meet bot: could not open the chat panel")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the flow notices a dead browser by itself
        log.warning("meet bot: captions/chat setup failed: %r", exc)


def with_english(url: str) -> str:
    """Ask Meet for English UI (hl=en) since the rules match English texts."""
    parts = urlsplit(url)
    if "hl=" in parts.query:
        return url
    query = f"{parts.query}&hl=en" if parts.query else "hl=en"
    return urlunsplit(parts._replace(query=query))


class _Flow:
    """State of one run; methods return the final BotResult."""

    def __init__(self, session: ChromiumSession, url: str, name: str, settings: BotSettings,
                 on_status: StatusCallback, leave_at: datetime | None, stop: asyncio.Event,
                 clock: Callable[[], datetime]) -> None:
        self.s = session
        self.url = url
        self.name = name
        self.cfg = settings
        self.on_status = on_status
        self.leave_at = leave_at
        self.stop = stop
        self.clock = clock
        self.loop = asyncio.get_running_loop()
        self._last_ok = self.loop.time()

    def now(self) -> float:
        return self.loop.time()

    # --- plumbing ------------------------------------------------------------------------
    def leave_reason(self) -> str | None:
        if self.stop.is_set():
            return "stopped"
        if self.leave_at is not None and self.clock() >= self.leave_at:
            return "end_time_reached"
        return None

    async def pause(self) -> None:
        """Sleep one poll interval, waking early when stop is set."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.stop.wait(), self.cfg.poll_interval)

    async def probe(self) -> mp.PageState | None:
        """Snapshot the page; None on a transient failure (navigation in progress, slow page)."""
        if not self.s.alive:
            raise BrowserGone("Chromium process exited")
        try:
            data = await self.s.evaluate_json(mp.PROBE_JS)
        except BrowserGone:
            raise
        except Exception as exc:  # context destroyed mid-navigation, protocol hiccups
            log.debug("probe failed: %r", exc)
            if self.now() - self._last_ok > UNRESPONSIVE_AFTER:
                raise BrowserGone("page unresponsive") from exc
            return None
        self._last_ok = self.now()
        self.s.remember_pids()
        return mp.PageState.from_json(data)

    async def click(self, button: mp.Button) -> bool:
        try:
            return await self.s.evaluate(mp.click_js(button.idx)) == "ok"
        except BrowserGone:
            raise
        except Exception as exc:
            log.debug("click failed: %r", exc)
            return False

    # --- phases --------------------------------------------------------------------------
    async def run(self) -> BotResult:
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.url))
        await self.s.grant_media(origin)
        await self.s.navigate(with_english(self.url))
        self._last_ok = self.now()
        return await self.prejoin()

    async def prejoin(self) -> BotResult:
        deadline = self.now() + self.cfg.prejoin_timeout
        clicked_at: float | None = None
        tries: dict[str, int] = {}  # bounded retries per action, so a stuck control cannot loop us
        while True:
            reason = self.leave_reason()
            if reason:
                return BotResult.left(reason)
            state = await self.probe()
            phase = mp.classify(state) if state else mp.Phase.LOADING
            if phase in _FAILED_PHASES:
                return BotResult.failed(_FAILED_PHASES[phase])
            if phase in _LEFT_PHASES:
                return BotResult.left(_LEFT_PHASES[phase])
            if phase is mp.Phase.IN_CALL:
                return await self.in_call()
            if phase is mp.Phase.WAITING_ROOM:
                return await self.waiting_room()
            if self.now() > deadline:
                return BotResult.failed("join_button_not_found")
            if phase is mp.Phase.PREJOIN and state is not None:
                acted = await self._prejoin_step(state, tries, clicked_at)
                if acted == "join":
                    clicked_at = self.now()
                if acted and acted != "join":
                    continue  # re-probe at once: the DOM changed under the old snapshot
            await self.pause()

    async def _prejoin_step(self, st: mp.PageState, tries: dict[str, int],
                            clicked_at: float | None) -> str | None:
        """Do the one next thing the pre-join screen needs; say what was done."""
        def attempt(key: str, limit: int) -> bool:
            tries[key] = tries.get(key, 0) + 1
            return tries[key] <= limit

        inter = mp.interstitial_button(st)
        if inter is not None and (mp.blocking_dialog(st) or inter.dialog is None) and attempt("dialog", 6):
            log.info("meet bot: dismissing interstitial via %r", inter.label or inter.text)
            await self.click(inter)
            await asyncio.sleep(0.3)
            return "dialog"
        if st.name_selector and mp.norm(st.name_value) != mp.norm(self.name) and attempt("name", 3):
            if await self.s.evaluate(mp.focus_name_js(st.name_selector)) == "ok":
                await self.s.insert_text(self.name)
            return "name"
        for button, proof in mp.media_buttons_to_turn_on(st):
            # Attendee's recipe: click, wait up to 2 s for the opposite label, retry a few times.
            if not attempt(proof, 4):
                continue
            await self.click(button)
            if await self._wait_for_label(proof, 2.0):
                return "toggle"
            log.warning("meet bot: %r did not appear after clicking %r", proof, button.label)
            return "toggle"
        join = mp.join_button(st)
        if join is not None and (clicked_at is None or self.now() - clicked_at > JOIN_RECLICK_AFTER):
            log.info("meet bot: clicking %r", join.text or join.label)
            if await self.click(join):
                return "join"
        return None

    async def _wait_for_label(self, prefix: str, timeout: float) -> bool:
        end = self.now() + timeout
        while self.now() < end:
            state = await self.probe()
            if state is not None and mp.has_button_label(state, prefix):
                return True
            await asyncio.sleep(0.2)
        return False

    async def waiting_room(self) -> BotResult:
        await self.on_status("waiting_room", None)
        deadline = self.now() + self.cfg.waiting_room_timeout
        while True:
            reason = self.leave_reason()
            if reason:
                await self.leave()
                return BotResult.left(reason)
            state = await self.probe()
            phase = mp.classify(state) if state else mp.Phase.LOADING
            if phase is mp.Phase.IN_CALL:
                return await self.in_call()
            if phase in _FAILED_PHASES:
                return BotResult.failed(_FAILED_PHASES[phase])
            if phase in _LEFT_PHASES:
                return BotResult.left(_LEFT_PHASES[phase])
            if self.now() > deadline:
                await self.leave()
                return BotResult.failed("waiting_room_timeout")
            await self.pause()

    async def in_call(self) -> BotResult:
        await self.on_status("in_call", None)
        alone_since: float | None = None
        seen_others = False
        ui_gone_since: float | None = None
        while True:
            reason = self.leave_reason()
            if reason:
                await self.leave()
                return BotResult.left(reason)
            state = await self.probe()
            phase = mp.classify(state) if state else mp.Phase.LOADING
            if phase in _LEFT_PHASES:
                return BotResult.left(_LEFT_PHASES[phase])
            if phase is mp.Phase.LEFT:  # we did not click Leave: someone took us out
                return BotResult.left("removed")
            if phase is mp.Phase.IN_CALL and state is not None:
                ui_gone_since = None
                notice = mp.notice_button(state)
                if notice is not None:
                    log.info("meet bot: accepting notice via %r", notice.text or notice.label)
                    await self.click(notice)
                count = mp.participant_count(state)
                if count is not None and count > 1:
                    seen_others, alone_since = True, None
                elif count == 1:
                    alone_since = alone_since if alone_since is not None else self.now()
                    # Joined an empty call: give people the lobby's patience to show up first.
                    limit = self.cfg.alone_grace if seen_others else max(
                        self.cfg.alone_grace, self.cfg.waiting_room_timeout)
                    if self.now() - alone_since >= limit:
                        await self.leave()
                        return BotResult.left("everyone_left")
            else:
                ui_gone_since = ui_gone_since if ui_gone_since is not None else self.now()
                if self.now() - ui_gone_since > CALL_UI_GONE_AFTER:
                    return BotResult.left("meeting_ended")
            await self.pause()

    async def leave(self) -> None:
        """Click "Leave call" if shown and wait briefly for Meet to confirm; best effort."""
        try:
            state = await self.probe()
            button = mp.leave_button(state) if state else None
            if button is None or not await self.click(button):
                return
            end = self.now() + LEAVE_CONFIRM_TIMEOUT
            while self.now() < end:
                await asyncio.sleep(0.2)
                state = await self.probe()
                if state is not None and mp.leave_button(state) is None:
                    return
        except BrowserGone:
            return
