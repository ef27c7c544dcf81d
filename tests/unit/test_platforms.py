"""The platform list: one place for names and joinability, and every joinable platform has a bot."""

from app.domain import meeting_links
from app.domain.decisions import PLATFORM_NAMES, decide
from app.domain.meeting_links import MeetingLink, classify_url
from app.domain.platforms import (
    JOINABLE_PLATFORMS, KNOWN_PLATFORMS, PLATFORMS, Platform, display_name, is_joinable, is_known, joinable_names,
)


def test_google_meet_is_joinable_zoom_and_teams_recognised_only():
    assert is_joinable("google_meet") and is_known("google_meet")
    for platform in ("zoom", "teams"):
        assert is_known(platform) and not is_joinable(platform)
    for other in ("other", None, "", "webex"):
        assert not is_known(other) and not is_joinable(other)


def test_display_names():
    assert display_name("google_meet") == "Google Meet"
    assert display_name(Platform.ZOOM) == "Zoom"
    assert display_name("teams") == "Microsoft Teams"
    assert display_name("other") == display_name(None) == "an unrecognised platform"
    assert joinable_names() == "Google Meet"


def test_platform_values_are_the_stored_strings():
    assert [str(p.platform) for p in PLATFORMS] == ["google_meet", "zoom", "teams"]
    assert f"{Platform.GOOGLE_MEET}" == "google_meet" and Platform.GOOGLE_MEET == "google_meet"


def test_links_and_decisions_agree_with_the_list():
    assert meeting_links.KNOWN_PLATFORMS == KNOWN_PLATFORMS
    assert (meeting_links.GOOGLE_MEET, meeting_links.ZOOM, meeting_links.TEAMS, meeting_links.OTHER) == (
        "google_meet", "zoom", "teams", "other")
    assert PLATFORM_NAMES == {"zoom": "Zoom", "teams": "Microsoft Teams"}
    assert classify_url("https://meet.google.com/abc-defg-hij").platform in JOINABLE_PLATFORMS
    assert classify_url("https://zoom.us/j/123").platform in KNOWN_PLATFORMS - JOINABLE_PLATFORMS
    for link, decision in [
        (MeetingLink("https://meet.google.com/abc-defg-hij", "google_meet"), "accepted"),
        (MeetingLink("https://zoom.us/j/1", "zoom"), "declined"),
        (MeetingLink("https://example.org/x", "other"), "declined"),
    ]:
        assert decide(link=link, allowed=True, authenticated=True).decision == decision


def test_every_joinable_platform_has_a_bot_and_no_bot_is_registered_for_others():
    from workers.bots import BOTS, bot_for
    from workers.meet_bot import run_meet_bot

    assert set(BOTS) == set(JOINABLE_PLATFORMS)
    assert bot_for("google_meet") is run_meet_bot
    assert bot_for("zoom") is None and bot_for("other") is None and bot_for(None) is None
