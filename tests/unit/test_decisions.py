from app.domain.decisions import decide
from app.domain.meeting_links import MeetingLink

MEET = MeetingLink("https://meet.google.com/abc-defg-hij", "google_meet")


def test_meet_link_from_allowed_sender_is_accepted():
    d = decide(link=MEET, allowed=True, authenticated=True)
    assert (d.decision, d.partstat, d.send_reply) == ("accepted", "ACCEPTED", True)


def test_an_unauthenticated_organizer_is_never_answered():
    for link, allowed in ((MEET, True), (None, True), (MEET, False)):
        assert decide(link=link, allowed=allowed, authenticated=False).send_reply is False


def test_no_link_or_other_link_declined():
    for link in (None, MeetingLink("https://example.org/x", "other")):
        d = decide(link=link, allowed=True, authenticated=True)
        assert (d.decision, d.partstat) == ("declined", "DECLINED")
        assert "Google Meet" in d.comment


def test_zoom_and_teams_recognised_and_declined_with_comment():
    zoom = decide(link=MeetingLink("https://zoom.us/j/1?pwd=x", "zoom"), allowed=True, authenticated=True)
    teams = decide(link=MeetingLink("https://teams.microsoft.com/l/meetup-join/x", "teams"), allowed=True, authenticated=True)
    assert zoom.decision == teams.decision == "declined"
    assert "Zoom" in zoom.comment and "not supported yet" in zoom.comment
    assert "Microsoft Teams" in teams.comment


def test_not_allowlisted_is_rejected_and_declined_only_when_authenticated():
    spoofable = decide(link=MEET, allowed=False, authenticated=False)
    proven = decide(link=MEET, allowed=False, authenticated=True)
    assert spoofable.decision == proven.decision == "rejected"
    assert spoofable.send_reply is False and proven.send_reply is True


def test_standing_decision_keeps_the_answer_given():
    from app.domain.decisions import standing_decision

    assert standing_decision("accepted", None, False).partstat == "ACCEPTED"
    assert standing_decision("declined", "Zoom is not supported yet", False).decision == "declined"
    assert standing_decision("rejected", "not allowlisted", False).send_reply is False
    assert standing_decision("accepted", None, False).send_reply is False
    assert standing_decision("declined", None, True).send_reply is True
    assert standing_decision("cancelled", None, True) is None
