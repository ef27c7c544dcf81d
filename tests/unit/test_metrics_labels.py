"""Label values of app/metrics.py come from closed sets, whatever the code or a client hands it."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from app import metrics


@pytest.mark.parametrize("outcome, label", [
    ({"outcome": "created", "decision": "accepted"}, "accepted"),
    ({"outcome": "updated", "decision": "declined"}, "declined"),
    ({"outcome": "created", "decision": "rejected"}, "rejected"),
    ({"outcome": "created", "decision": "something new"}, "other"),
    ({"outcome": "cancelled", "decision": "cancelled"}, "cancelled"),
    ({"outcome": "instances_cancelled", "decision": "accepted"}, "cancelled"),
    ({"outcome": "removed", "decision": "accepted"}, "removed"),
    ({"outcome": "stale", "reason": "older SEQUENCE"}, "stale"),
    ({"outcome": "ignored", "reason": "unknown UID"}, "ignored"),
    ({"outcome": "spoof"}, "spoof"),
    ({"dropped": "unauthenticated"}, "unauthenticated"),
    ({"recipient": "x@y", "ignored": "no such PAL"}, "ignored"),
    ({"outcome": "alex@acme.com"}, "other"),
])
def test_invite_outcome_labels(outcome, label):
    assert metrics.invite_outcome(outcome) == label
    assert metrics.invite_outcome(outcome) in metrics.INVITE_OUTCOMES | {"other"}


def test_messages_without_outcomes_count_once():
    def value(outcome: str) -> float:
        return metrics.INVITES_RECEIVED.labels(outcome)._value.get()

    before = value("not_an_invite"), value("failed"), value("accepted")
    metrics.count_invites({"ignored": "no iMIP calendar part"})
    metrics.count_invites({"failed": "max_attempts", "error": "boom"})
    metrics.count_invites({"method": "REQUEST", "outcomes": [{"outcome": "created", "decision": "accepted"}] * 2})
    assert (value("not_an_invite"), value("failed"), value("accepted")) == (
        before[0] + 1, before[1] + 1, before[2] + 2)


def test_join_reasons_are_a_closed_set():
    assert metrics.join_reason(None) == ""
    assert metrics.join_reason("ended_by_api") == "ended_by_api"
    assert metrics.join_reason("missed") == "missed"
    assert metrics.join_reason("error: ValueError('https://meet.google.com/abc-defg-hij')") == "error"
    assert metrics.join_reason("a reason nobody registered") == "other"
    assert metrics.join_reason("teleported_out") == "other"  # e.g. a new bot's reason, until its worker
    metrics.allow_join_reasons({"teleported_out"})          # registers its set (workers/settings.py)
    assert metrics.join_reason("teleported_out") == "teleported_out"


def test_a_worker_registers_its_bots_reasons():
    import workers.settings  # noqa: F401
    from workers.meet_bot.models import FAILED_REASONS, LEFT_REASONS

    assert {metrics.join_reason(r) for r in LEFT_REASONS | FAILED_REASONS} == LEFT_REASONS | FAILED_REASONS


def test_hostile_values_never_become_series():
    metrics.observe_http("BREW", "/v2/pals/{pal_id}", 418, 0.01)
    metrics.observe_graphql("hack-the-planet", True, 0.01)
    metrics.count_reply("mona@acme.com")
    metrics.count_webhook_delivery("https://hooks.example.org/x")
    metrics.count_inbound_message("ftp")
    metrics.count_join("dancing", "error: boom")
    text = generate_latest().decode()
    for value in ("BREW", "hack-the-planet", "mona@acme.com", "hooks.example.org", "ftp", "dancing", "boom"):
        assert value not in text
    assert 'pal_webhook_deliveries_total{result="other"}' in text
    assert 'pal_joins_total{reason="error",status="other"}' in text


def test_webhook_results_exist_before_the_first_delivery():
    text = generate_latest().decode()
    for result in metrics.WEBHOOK_RESULTS:
        assert f'pal_webhook_deliveries_total{{result="{result}"}}' in text
