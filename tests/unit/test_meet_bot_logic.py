"""Pure rules of the meet bot: what a Meet page snapshot means and what to click."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from app.media import MediaToolMissing, ensure_face_media
from app.media import generate
from workers.meet_bot import BotResult, BotSlots, parse_browser_args
from workers.meet_bot import meet_page as mp
from workers.meet_bot.bot import with_english


def btn(label: str = "", text: str = "", *, dialog: int | None = None, action: str = "",
        disabled: bool = False, spans: list[str] | None = None) -> dict[str, Any]:
    return {"idx": f"{label}|{text}", "label": label, "text": text, "spans": spans or ([text] if text else []),
            "dialog": dialog, "action": action, "disabled": disabled}


def page(text: str = "", buttons: list[dict[str, Any]] | None = None, **kw: Any) -> mp.PageState:
    return mp.PageState.from_json({"url": "https://meet.google.com/abc-defg-hij", "text": text,
                                   "buttons": buttons or [], **kw})


PREJOIN = page("Ready to join? What's your name?", [
    btn("Turn on microphone", "mic"), btn("Turn on camera (ctrl + e)", "videocam"), btn(text="Ask to join"),
    btn(text="Other ways to join")], name_input={"selector": 'input[aria-label="Your name"]', "value": ""})
LOBBY_CONTROLS = [btn("Turn off microphone"), btn("Turn off camera"), btn("Leave call"), btn(text="Return to home screen")]
IN_CALL_BUTTONS = [btn("Turn off microphone"), btn("Turn on captions"), btn("Chat with everyone"), btn("Leave call")]


def test_prejoin_screen() -> None:
    assert mp.classify(PREJOIN) is mp.Phase.PREJOIN
    assert mp.join_button(PREJOIN).text == "Ask to join"  # type: ignore[union-attr]
    to_turn_on = [(b.label, proof) for b, proof in mp.media_buttons_to_turn_on(PREJOIN)]
    assert to_turn_on == [("Turn on camera (ctrl + e)", "Turn off camera"), ("Turn on microphone", "Turn off microphone")]


def test_waiting_room_is_not_admission() -> None:
    # The lobby shows Leave, mic, camera and "Return to home screen" (Vexa #471, Meeting BaaS #198).
    lobby = page("Asking to be let in\u2026 You\u2019ll join the call when someone lets you in", LOBBY_CONTROLS)
    assert mp.classify(lobby) is mp.Phase.WAITING_ROOM
    assert mp.classify(page("Please wait until a meeting host brings you into the call", LOBBY_CONTROLS)) \
        is mp.Phase.WAITING_ROOM


@pytest.mark.parametrize("state", [
    page("", [btn("Turn on captions")]),
    page("", [btn("Chat with everyone"), btn("Leave call")], participant_ids=3),
    page("", [btn("Leave call")], participant_ids=2, call_controls=True),
])
def test_in_call_signs(state: mp.PageState) -> None:
    assert mp.classify(state) is mp.Phase.IN_CALL


def test_leave_and_mic_alone_are_not_in_call() -> None:
    assert mp.classify(page("", LOBBY_CONTROLS)) is not mp.Phase.IN_CALL


def test_chat_saying_meeting_ended_does_not_end_the_call() -> None:
    s = page("Guest 1: ok, meeting ended for me, the call ended", IN_CALL_BUTTONS, participant_ids=2)
    assert mp.classify(s) is mp.Phase.IN_CALL


@pytest.mark.parametrize(("text", "phase"), [
    ("Someone in the call denied your request to join", mp.Phase.DENIED),
    ("No one responded to your request to join the call", mp.Phase.NO_RESPONSE),
    ("You can\u2019t join this video call", mp.Phase.BLOCKED),
    ("You can't join this video call", mp.Phase.BLOCKED),
    ("There is a problem connecting to this video call", mp.Phase.BLOCKED),
    ("Check your meeting code", mp.Phase.INVALID),
    ("Your meeting code has expired", mp.Phase.INVALID),
    ("The meeting code you entered doesn\u2019t work", mp.Phase.INVALID),
    ("Your host ended the meeting for everyone", mp.Phase.ENDED),
    ("The call ended", mp.Phase.ENDED),
    ("You\u2019ve been removed from the meeting", mp.Phase.REMOVED),
    ("You left the meeting", mp.Phase.LEFT),
])
def test_end_screens(text: str, phase: mp.Phase) -> None:
    assert mp.classify(page(text, [btn(text="Return to home screen")])) is phase


def test_removed_wins_over_lingering_call_ui() -> None:
    assert mp.classify(page("You've been removed from the meeting", IN_CALL_BUTTONS)) is mp.Phase.REMOVED


def test_sign_in_wall() -> None:
    assert mp.classify(page("Sign in to continue to Google Meet. Use your Google Account", h1=["Sign in"])) \
        is mp.Phase.SIGN_IN
    assert mp.classify(mp.PageState.from_json({"url": "https://accounts.google.com/v3/signin"})) is mp.Phase.SIGN_IN


def test_blank_page_is_loading() -> None:
    assert mp.classify(page("")) is mp.Phase.LOADING


def test_join_button_exact_and_ordered() -> None:
    s = page("", [btn(text="Ask to join again"), btn(text="Join here too"), btn(text="Switch here")])
    assert mp.join_button(s).text == "Join here too"  # type: ignore[union-attr]
    only_again = page("", [btn(text="Ask to join again")])
    assert mp.join_button(only_again) is None
    nested = page("", [btn(text="videocam Join now", spans=["videocam", "Join now"])])
    assert mp.join_button(nested) is not None


def test_join_button_skips_disabled_and_dialogs() -> None:
    s = page("", [btn(text="Ask to join", disabled=True), btn(text="Join now", dialog=0)],
             dialogs=[{"text": "recorded", "modal": True}])
    assert mp.join_button(s) is None


def test_interstitial_never_drops_media() -> None:
    dialog = [{"text": "Do you want people to see and hear you in the meeting?", "modal": True}]
    s = page("", [btn(text="Continue without microphone and camera", dialog=0), btn("Dismiss", "close", dialog=0)],
             dialogs=dialog)
    assert mp.blocking_dialog(s)
    assert mp.interstitial_button(s).label == "Dismiss"  # type: ignore[union-attr]
    only_bad = page("", [btn(text="Continue without microphone and camera", dialog=0)], dialogs=dialog)
    assert mp.interstitial_button(only_bad) is None
    allow = page("", [btn(text="Continue without microphone and camera", dialog=0),
                      btn(text="Allow microphone and camera", dialog=0)], dialogs=dialog)
    assert mp.interstitial_button(allow).text == "Allow microphone and camera"  # type: ignore[union-attr]


def test_use_without_an_account() -> None:
    s = page("", [btn(text="Sign in"), btn(text="Use without an account")])
    assert mp.interstitial_button(s).text == "Use without an account"  # type: ignore[union-attr]


def test_notice_button() -> None:
    dialogs = [{"text": "This video call is being recorded", "modal": True}]
    s = page("", [*IN_CALL_BUTTONS, btn(text="Leave meeting", dialog=0, action="cancel"),
                  btn(text="Join now", dialog=0, action="ok")], dialogs=dialogs)
    assert mp.notice_button(s).text == "Join now"  # type: ignore[union-attr]
    assert mp.classify(s) is mp.Phase.IN_CALL
    got_it = page("", [btn(text="Got it", dialog=0)], dialogs=[{"text": "Gemini is taking notes", "modal": True}])
    assert mp.notice_button(got_it).text == "Got it"  # type: ignore[union-attr]
    assert mp.notice_button(page("", IN_CALL_BUTTONS)) is None


def test_participant_count() -> None:
    assert mp.participant_count(page("", participant_ids=3)) == 3
    assert mp.participant_count(page("", participant_ids=1, avatar_count=4)) == 4
    assert mp.participant_count(page("")) is None


def test_leave_button() -> None:
    assert mp.leave_button(page("", IN_CALL_BUTTONS)).label == "Leave call"  # type: ignore[union-attr]


def test_norm() -> None:
    assert mp.norm("  You\u2019ll\u00a0join \n the call\u2026 ") == "you'll join the call..."


def test_parse_browser_args() -> None:
    raw = "'--host-resolver-rules=MAP meet.google.com 127.0.0.1:8443' --ignore-certificate-errors-spki-list=abc="
    assert parse_browser_args(raw) == ("--host-resolver-rules=MAP meet.google.com 127.0.0.1:8443",
                                       "--ignore-certificate-errors-spki-list=abc=")
    assert parse_browser_args("") == () and parse_browser_args(None) == ()


def test_with_english() -> None:
    assert with_english("https://meet.google.com/abc-defg-hij") == "https://meet.google.com/abc-defg-hij?hl=en"
    assert with_english("https://meet.google.com/abc-defg-hij?authuser=0") == \
        "https://meet.google.com/abc-defg-hij?authuser=0&hl=en"
    assert with_english("https://meet.google.com/x?hl=de") == "https://meet.google.com/x?hl=de"


def test_bot_result_reasons() -> None:
    assert BotResult.left("stopped") == BotResult("left", "stopped")
    assert BotResult.failed("browser_crash").status == "failed"
    with pytest.raises(ValueError):
        BotResult.failed("stopped")


async def test_bot_slots_bound_concurrency() -> None:
    slots = BotSlots(2)
    running = peak = 0

    async def bot() -> None:
        nonlocal running, peak
        async with slots:
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(bot() for _ in range(6)))
    assert peak == 2 and slots.in_use == 0 and slots.free == 2
    with pytest.raises(ValueError):
        BotSlots(0)


def test_face_media_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if generate.shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng not installed")
    media = ensure_face_media("r90bbd427f71", "Anna", "en-us+f3", tmp_path)
    head = media.video_path.read_bytes()[:64]
    assert head.startswith(b"YUV4MPEG2 W320 H240 F12:1")
    assert media.audio_path.read_bytes()[:4] == b"RIFF"
    stamp = media.video_path.stat().st_mtime_ns, media.audio_path.stat().st_mtime_ns
    # Second call reuses both files, even with espeak-ng gone.
    monkeypatch.setattr(generate.shutil, "which", lambda _: None)
    again = ensure_face_media("r90bbd427f71", "Anna", "en-us+f3", tmp_path)
    assert again == media
    assert (again.video_path.stat().st_mtime_ns, again.audio_path.stat().st_mtime_ns) == stamp


def test_face_frames_move() -> None:
    frames = {generate.face_frame("k", i) for i in range(0, 12, 3)}
    assert len(frames) == 4
    assert len(next(iter(frames))) == generate.WIDTH * generate.HEIGHT * 3 // 2


def test_missing_espeak_names_the_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate.shutil, "which", lambda _: None)
    with pytest.raises(MediaToolMissing, match="apt-get install espeak-ng"):
        generate.write_voice_wav(tmp_path / "v.wav", "hi", "en")


def test_bad_voice_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        ensure_face_media("k", "Anna", "--help", tmp_path)


def test_chromium_error_page_means_unreachable() -> None:
    offline = mp.PageState.from_json({"url": "chrome-error://chromewebdata/", "text": "This site can't be reached",
                                      "buttons": [btn(text="Reload")]})
    assert mp.classify(offline) is mp.Phase.UNREACHABLE
    assert BotResult.failed("meeting_unreachable").reason == "meeting_unreachable"
