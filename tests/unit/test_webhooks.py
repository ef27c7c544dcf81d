"""Webhooks, pure part: types, URL and event-type rules, secrets and Standard Webhooks signatures."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from app.domain import webhooks as rules
from app.domain.errors import ValidationFailed
from app.domain.join_state import JoinStatus, event_kind_for

NOW = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def test_every_issue_type_exists_and_join_statuses_map_to_join_types():
    assert set(rules.EVENT_TYPES) == {
        "invite.received", "invite.accepted", "invite.declined", "invite.rejected", "reply.sent", "reply.failed",
        "join.scheduled", "join.rescheduled", "join.cancelled", "join.dispatching", "join.joining",
        "join.waiting_room", "join.in_call", "join.left", "join.failed", "conversation.transcript",
        "conversation.notes_ready"}
    for status in JoinStatus:
        if status != JoinStatus.SCHEDULED:  # scheduled is announced as join_scheduled / join_rescheduled
            assert rules.public_type(event_kind_for(status)) == f"join.{status}"
    assert rules.public_type("notes_ready") == "conversation.notes_ready"
    assert rules.public_type("join_stop_requested") is None and rules.public_type("webhook_failing") is None


def test_no_event_types_means_all_but_the_opt_in_transcript():
    assert rules.subscribed([], "join.left") and not rules.subscribed([], "conversation.transcript")
    assert rules.subscribed(["conversation.transcript"], "conversation.transcript")
    assert not rules.subscribed(["join.left"], "join.in_call")


@pytest.mark.parametrize("url", ["https://hooks.example.com/x?y=1", "http://127.0.0.1:8080/h", "https://[::1]/"])
def test_good_urls(url):
    assert rules.validate_url(url) == url


@pytest.mark.parametrize("url, words", [
    ("ws://x.example.com/", "http"), ("https://u:p@x.example.com/", "credentials"),
    ("https://u@x.example.com/", "credentials"), ("https://x.example.com/#f", "fragment"),
    ("https://x.example.com:0/", "port 0"), ("https://x.example.com:99999/", "not a valid URL"),
    ("https://x.example.com/é", "non-ASCII"), ("http://", "host"), ("", "required"), (None, "required"),
    ("https://x.example.com/" + "a" * 2048, "2048"),
])
def test_bad_urls_name_the_field(url, words):
    with pytest.raises(ValidationFailed) as caught:
        rules.validate_url(url)
    assert caught.value.field == "url" and words in caught.value.message


def test_event_types_are_checked_and_deduplicated():
    assert rules.validate_event_types(None) == [] and rules.validate_event_types([]) == []
    assert rules.validate_event_types(["join.left", "join.left"]) == ["join.left"]
    for bad in (["join.nope"], [1], "join.left", ["join.left"] * 40):
        with pytest.raises(ValidationFailed):
            rules.validate_event_types(bad)


def test_signatures_verify_with_the_standardwebhooks_library():
    secret = rules.new_secret()
    assert secret.startswith("whsec_") and len(rules.secret_key(secret)) == 32
    body = rules.body("join.left", NOW, {"pal_id": "p1", "join_id": 3})
    assert json.loads(body) == {"type": "join.left", "timestamp": "2030-01-02T03:04:05Z",
                                "data": {"pal_id": "p1", "join_id": 3}}
    headers = rules.signed_headers([secret], "msg_1", int(time.time()), body)
    assert Webhook(secret).verify(body, headers)["type"] == "join.left"
    with pytest.raises(WebhookVerificationError):
        Webhook(rules.new_secret()).verify(body, headers)
    with pytest.raises(WebhookVerificationError):  # the body is what is signed
        Webhook(secret).verify(body.replace(b"3", b"4"), headers)


def test_the_previous_secret_signs_only_during_the_overlap():
    until = NOW + rules.ROTATION_OVERLAP
    assert rules.signing_secrets("new", "old", until, NOW + timedelta(hours=23)) == ["new", "old"]
    assert rules.signing_secrets("new", "old", until, until) == ["new"]
    assert rules.signing_secrets("new", None, None, NOW) == ["new"]


def test_backoff_is_exponential_with_jitter_and_capped():
    low, high = (lambda: 0.0), (lambda: 1.0)
    assert rules.backoff(1, rng=low) == timedelta(seconds=2.5) and rules.backoff(1, rng=high) == timedelta(seconds=5)
    assert rules.backoff(4, rng=high) == timedelta(seconds=40)
    assert rules.backoff(30, rng=high) == timedelta(hours=1) and rules.backoff(30, rng=low) == timedelta(minutes=30)


def test_internal_keys_stay_out_of_the_data():
    assert rules.event_data("p1", {"event_id": 9, "key": "mail-key", "uid": "u", "pal_id": "x"}) == {
        "pal_id": "p1", "event_id": 9, "uid": "u"}


def test_only_2xx_delivers():
    assert rules.response_ok(204) and not rules.response_ok(302) and not rules.response_ok(500)
