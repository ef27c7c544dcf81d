"""The meet bot in a real headless Chromium against the HTTPS Meet look-alike.

Chromium reaches the look-alike only through BOT_BROWSER_ARGS-style flags, with the production
meeting URL https://meet.google.com/<code>.
"""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import string
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from app.media import ensure_face_media
from tests.meet_lookalike import MeetLookalike
from workers.meet_bot import BotResult, BotSettings, FaceMedia, parse_browser_args, run_meet_bot, utcnow
from workers.meet_bot import browser as browser_mod
from workers.meet_bot import procs

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists(),
                       reason=f"Chromium not found at {CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)"),
]

PROFILE_PREFIX = "pal-meet-bot-"


def new_code() -> str:
    r = random.Random()
    part = lambda n: "".join(r.choice(string.ascii_lowercase) for _ in range(n))  # noqa: E731
    return f"{part(3)}-{part(4)}-{part(3)}"


def bot_processes() -> list[int]:
    """Live Chromium processes started by any meet bot (every one carries the bot's profile dir)."""
    return procs.pids_with_arg(PROFILE_PREFIX)


def browser_main_pid() -> int | None:
    """This test's bot Chromium browser process: our direct child, without --type=."""
    for pid in bot_processes():
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        # Chromium's helpers rewrite argv into one string, so search the raw bytes.
        if ppid == os.getpid() and b"chromium" in raw and b"--type=" not in raw:
            return pid
    return None


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> FaceMedia:
    return ensure_face_media("r90bbd427f71", "Anna", "en-us+f3", tmp_path_factory.mktemp("face-media"))


@pytest.fixture(autouse=True)
def no_leftovers(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """After each test no Chromium of this test's bots runs and their profile dirs are gone.

    Profile dirs are recorded as the bot makes them, so bots of other processes on the same host
    (parallel test runs) do not count.
    """
    made: list[str] = []
    real_mkdtemp = browser_mod.tempfile.mkdtemp

    def recording_mkdtemp(*args: object, **kw: object) -> str:
        path = real_mkdtemp(*args, **kw)  # type: ignore[arg-type]
        if Path(path).name.startswith(PROFILE_PREFIX):
            made.append(path)
        return path

    monkeypatch.setattr(browser_mod.tempfile, "mkdtemp", recording_mkdtemp)
    yield
    monkeypatch.undo()
    assert made, "the bot made no profile dir"
    for path in made:
        assert procs.pids_with_arg(path) == [], f"Chromium processes of {path} left behind"
        assert not Path(path).exists(), f"profile dir {path} left behind"


def settings(args: str, **kw: float) -> BotSettings:
    base = dict(waiting_room_timeout=15, alone_grace=2, poll_interval=0.25, prejoin_timeout=20)
    base.update(kw)
    return BotSettings(chromium_path=CHROMIUM, extra_args=parse_browser_args(args), **base)


class Statuses:
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.hooks: dict[str, object] = {}

    async def __call__(self, status: str, reason: str | None) -> None:
        assert reason is None
        self.seen.append(status)
        hook = self.hooks.get(status)
        if hook is not None:
            hook()  # type: ignore[operator]


async def run(server: MeetLookalike, args: str, media: FaceMedia, scenario: str, *,
              statuses: Statuses | None = None, bot_settings: BotSettings | None = None,
              **kw: object) -> tuple[BotResult, Statuses, str]:
    code = new_code()
    run_kw = {k: kw.pop(k) for k in ("leave_at", "stop") if k in kw}
    url = server.configure(code, scenario, **kw)
    statuses = statuses or Statuses()
    result = await asyncio.wait_for(
        run_meet_bot(url, "Anna PAL", media, bot_settings or settings(args), on_status=statuses, **run_kw),
        timeout=60,
    )
    return result, statuses, code


async def test_admitted_after_wait_sends_live_media(meet_lookalike: MeetLookalike, lookalike_browser_args: str,
                                                    media: FaceMedia) -> None:
    result, st, code = await run(meet_lookalike, lookalike_browser_args, media, "ended",
                                 admit_after=2.0, end_after=5.0, recording_notice=True)
    rec = meet_lookalike.record(code)
    assert result == BotResult("left", "meeting_ended")
    assert st.seen == ["joining", "waiting_room", "in_call"]
    assert rec.name == "Anna PAL"
    assert rec.join_button == "Ask to join"
    assert rec.camera_on_at_join is True and rec.mic_on_at_join is True  # page started with both off
    assert rec.notice_accepted
    assert rec.media, "the page never measured media"
    assert rec.video_live(), rec.media
    assert rec.audio_live(), rec.media
    assert "join_blocked_by_dialog" not in rec.event_names()


@pytest.mark.parametrize(("scenario", "reason", "options"), [
    ("deny", "denied", {"admit_after": 1.0}),
    ("no_response", "no_response", {"admit_after": 1.0}),
    ("blocked", "blocked", {}),
    ("invalid", "invalid_meeting", {}),
    ("sign_in", "sign_in_required", {}),
])
async def test_join_failures(meet_lookalike: MeetLookalike, lookalike_browser_args: str, media: FaceMedia,
                             scenario: str, reason: str, options: dict[str, float]) -> None:
    result, st, _ = await run(meet_lookalike, lookalike_browser_args, media, scenario, **options)
    assert result == BotResult("failed", reason)
    assert "in_call" not in st.seen


async def test_waiting_room_timeout(meet_lookalike: MeetLookalike, lookalike_browser_args: str,
                                    media: FaceMedia) -> None:
    result, st, code = await run(meet_lookalike, lookalike_browser_args, media, "never_admit",
                                 bot_settings=settings(lookalike_browser_args, waiting_room_timeout=2))
    assert result == BotResult("failed", "waiting_room_timeout")
    assert st.seen == ["joining", "waiting_room"]
    # The lobby shows Leave/mic/camera/"Return to home screen": none of them meant admission.
    assert not meet_lookalike.record(code).admitted


@pytest.mark.parametrize(("scenario", "reason"), [("ended", "meeting_ended"), ("removed", "removed")])
async def test_call_ends(meet_lookalike: MeetLookalike, lookalike_browser_args: str, media: FaceMedia,
                         scenario: str, reason: str) -> None:
    result, st, code = await run(meet_lookalike, lookalike_browser_args, media, scenario, admit_after=0.5, end_after=2)
    assert result == BotResult("left", reason)
    assert st.seen[-1] == "in_call"


async def test_everyone_left(meet_lookalike: MeetLookalike, lookalike_browser_args: str, media: FaceMedia) -> None:
    result, _, code = await run(meet_lookalike, lookalike_browser_args, media, "everyone_left",
                                admit_after=0.5, end_after=1.5,
                                bot_settings=settings(lookalike_browser_args, alone_grace=1.5))
    assert result == BotResult("left", "everyone_left")
    assert meet_lookalike.record(code).leave_clicked == "call"


@pytest.mark.parametrize("interstitial", ["media_choice", "got_it"])
async def test_dialog_in_front_of_join_button(meet_lookalike: MeetLookalike, lookalike_browser_args: str,
                                              media: FaceMedia, interstitial: str) -> None:
    result, st, code = await run(meet_lookalike, lookalike_browser_args, media, "ended",
                                 interstitial=interstitial, admit_after=0.5, end_after=1.5)
    rec = meet_lookalike.record(code)
    assert result == BotResult("left", "meeting_ended")
    assert rec.interstitial_clicked == "dismiss"  # never "Continue without microphone and camera"
    assert rec.camera_on_at_join and rec.mic_on_at_join


async def test_join_now_goes_straight_in(meet_lookalike: MeetLookalike, lookalike_browser_args: str,
                                         media: FaceMedia) -> None:
    stop = asyncio.Event()
    st = Statuses()
    st.hooks["in_call"] = lambda: asyncio.get_running_loop().call_later(1.0, stop.set)
    result, _, code = await run(meet_lookalike, lookalike_browser_args, media, "join_now", statuses=st, stop=stop)
    assert result == BotResult("left", "stopped")
    assert st.seen == ["joining", "in_call"]
    assert meet_lookalike.record(code).join_button == "Join now"


async def test_stop_event_leaves_call(meet_lookalike: MeetLookalike, lookalike_browser_args: str,
                                      media: FaceMedia) -> None:
    stop = asyncio.Event()
    st = Statuses()
    st.hooks["in_call"] = lambda: asyncio.get_running_loop().call_later(1.5, stop.set)
    result, _, code = await run(meet_lookalike, lookalike_browser_args, media, "stay", admit_after=0.5,
                                statuses=st, stop=stop)
    assert result == BotResult("left", "stopped")
    assert meet_lookalike.record(code).leave_clicked == "call"


async def test_leave_at_reached(meet_lookalike: MeetLookalike, lookalike_browser_args: str, media: FaceMedia) -> None:
    result, st, code = await run(meet_lookalike, lookalike_browser_args, media, "stay", admit_after=0.5,
                                 leave_at=utcnow() + timedelta(seconds=5))
    assert result == BotResult("left", "end_time_reached")
    assert st.seen[-1] == "in_call"
    assert meet_lookalike.record(code).leave_clicked == "call"


async def test_browser_crash(meet_lookalike: MeetLookalike, lookalike_browser_args: str, media: FaceMedia) -> None:
    killed: list[int] = []

    def kill_browser() -> None:
        pid = browser_main_pid()
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)

    st = Statuses()
    st.hooks["in_call"] = kill_browser
    result, _, _ = await run(meet_lookalike, lookalike_browser_args, media, "stay", admit_after=0.5, statuses=st)
    assert killed
    assert result == BotResult("failed", "browser_crash")


async def test_cancellation_cleans_up(meet_lookalike: MeetLookalike, lookalike_browser_args: str,
                                      media: FaceMedia) -> None:
    in_call = asyncio.Event()
    st = Statuses()
    st.hooks["in_call"] = in_call.set
    url = meet_lookalike.configure(new_code(), "stay", admit_after=0.5)
    task = asyncio.create_task(run_meet_bot(url, "Anna PAL", media, settings(lookalike_browser_args), on_status=st))
    await asyncio.wait_for(in_call.wait(), 30)
    assert browser_main_pid() is not None
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_unreachable_meeting_fails_fast_with_its_own_reason(media: FaceMedia) -> None:
    # Every host unresolvable: Chromium shows its network error page, never Meet's.
    offline = settings('--host-resolver-rules="MAP * ~NOTFOUND"', prejoin_timeout=40)
    started = asyncio.get_running_loop().time()
    result = await asyncio.wait_for(run_meet_bot(f"https://meet.google.com/{new_code()}", "Anna PAL", media, offline,
                                                 on_status=Statuses()), timeout=60)
    assert result == BotResult("failed", "meeting_unreachable")
    assert asyncio.get_running_loop().time() - started < 30  # well before the pre-join timeout
