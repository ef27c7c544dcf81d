"""Meeting link normalisation and precedence (CONFORMANCE cases 9-13)."""

import time

import icalendar
import pytest

from app.domain.meeting_links import MeetingLink, classify_url, find_meeting_link, iter_links

TABLE = [
    ("https://meet.google.com/abc-defg-hij", "https://meet.google.com/abc-defg-hij", "google_meet"),
    ("https://meet.google.com/ABC-DEFG-HIJ?hs=224", "https://meet.google.com/abc-defg-hij", "google_meet"),
    ("http://meet.google.com/pyb-ndcu-hhc?authuser=1&hs=122).", "https://meet.google.com/pyb-ndcu-hhc", "google_meet"),
    ("https://meet.google.com/abc-defg-hij/", "https://meet.google.com/abc-defg-hij", "google_meet"),
    ("https://meet.google.com/lookup/abcdefgh?authuser=0", "https://meet.google.com/lookup/abcdefgh", "google_meet"),
    ("https://www.google.com/url?q=https://meet.google.com/abc-defg-hij&sa=D", "https://meet.google.com/abc-defg-hij", "google_meet"),
    ("https://us02web.zoom.us/j/123456789?pwd=AbC123&from=addon", "https://us02web.zoom.us/j/123456789?pwd=AbC123", "zoom"),
    ("https://zoom.us/j/987?uname=x", "https://zoom.us/j/987", "zoom"),
    ("https://acme.zoom.us/my/room.", "https://acme.zoom.us/my/room", "zoom"),
    ("https://teams.microsoft.com/l/meetup-join/19%3ameeting_X%40thread.v2/0?context=%7b%22Tid%22%7d>",
     "https://teams.microsoft.com/l/meetup-join/19%3ameeting_X%40thread.v2/0?context=%7b%22Tid%22%7d", "teams"),
    ("https://teams.live.com/meet/9876543210?p=abc,", "https://teams.live.com/meet/9876543210?p=abc", "teams"),
    ("https://example.com/room/1;", "https://example.com/room/1", "other"),
    ("https://meet.google.com/", "https://meet.google.com/", "other"),
    ("https://zoom.us/download", "https://zoom.us/download", "other"),
]


@pytest.mark.parametrize(("raw", "url", "platform"), TABLE)
def test_classify_url_table(raw: str, url: str, platform: str) -> None:
    assert classify_url(raw) == MeetingLink(url, platform)


@pytest.mark.parametrize("raw", ["ftp://meet.google.com/abc-defg-hij", "mailto:a@b.c", "", "tel:+1555", "http://[::1", "https://"])
def test_classify_url_rejects_non_http(raw: str) -> None:
    assert classify_url(raw) is None


def _event(**props: str) -> icalendar.Event:
    ev = icalendar.Event()
    for key, value in props.items():
        ev.add(key.replace("_", "-"), value)
    return ev


def test_case_12_conference_beats_zoom_in_description() -> None:
    ev = _event(
        description="Join Zoom https://zoom.us/j/111?pwd=z",
        x_google_conference="https://meet.google.com/abc-defg-hij",
    )
    assert find_meeting_link(ev) == MeetingLink("https://meet.google.com/abc-defg-hij", "google_meet")


def test_case_12_precedence_order() -> None:
    ev = _event(
        location="https://zoom.us/j/222",
        description="https://meet.google.com/zzz-zzzz-zzz",
        x_microsoft_skypeteamsmeetingurl="https://teams.microsoft.com/l/meetup-join/abc",
    )
    assert find_meeting_link(ev).platform == "teams"
    del ev["X-MICROSOFT-SKYPETEAMSMEETINGURL"]
    assert find_meeting_link(ev) == MeetingLink("https://zoom.us/j/222", "zoom")
    ev.add("CONFERENCE", "https://meet.google.com/aaa-bbbb-ccc")
    assert find_meeting_link(ev).url == "https://meet.google.com/aaa-bbbb-ccc"


def test_case_13_zoom_location_keeps_pwd() -> None:
    ev = _event(location="https://us02web.zoom.us/j/123?pwd=x")
    assert find_meeting_link(ev) == MeetingLink("https://us02web.zoom.us/j/123?pwd=x", "zoom")


def test_known_platform_in_text_beats_other_url() -> None:
    ev = _event(location="https://venue.example/map", description="Meet: https://meet.google.com/abc-defg-hij")
    assert find_meeting_link(ev).platform == "google_meet"
    ev2 = _event(description="See https://example.com/a then https://zoom.us/j/5")
    assert find_meeting_link(ev2).platform == "zoom"


def test_other_url_is_fallback_and_boilerplate_ignored() -> None:
    ev = _event(description="View your event at https://www.google.com/calendar/event?eid=x")
    assert find_meeting_link(ev) is None
    ev.add("location", "https://webex.example.com/join/1")
    assert find_meeting_link(ev) == MeetingLink("https://webex.example.com/join/1", "other")


def test_ical_escapes_and_angle_brackets_end_urls() -> None:
    links = list(iter_links("Join <https://teams.microsoft.com/l/meetup-join/19%3a/0?context=x>\\, ok"))
    assert links[0].url == "https://teams.microsoft.com/l/meetup-join/19%3a/0?context=x"


def test_no_link() -> None:
    assert find_meeting_link(_event(summary="x", location="Room 4")) is None


def test_scanning_hostile_text_is_fast() -> None:
    text = "http://" + "a" * 200_000 + " " + "https://x" * 50_000
    t0 = time.perf_counter()
    assert find_meeting_link(_event(description=text)) is not None
    assert time.perf_counter() - t0 < 2.0
