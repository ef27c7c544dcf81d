"""Every Prometheus metric this service exports, defined once (docs/operations.md says what each means).

Each process (API, worker, SMTP) keeps its own counters in prometheus-client's default
registry and serves them itself: the API at GET /metrics on its own port, the worker and
the SMTP server on WORKER_METRICS_PORT / SMTP_METRICS_PORT (app/metrics_server.py).
Prometheus adds `instance` and `job`, so "bots running per worker" is the gauge per instance.

Labels never carry tenant data (no PAL ids, addresses, URLs, meeting codes) and always come
from closed sets: route templates rather than raw paths, enum values rather than free text.
Anything outside a set is counted as "other", so a bug or a hostile input can never
create new series. The `count_*` / `observe_*` helpers are what the rest of the code calls;
they never raise.
"""

from __future__ import annotations

import functools
import hmac
import logging
import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, generate_latest

from app.config import get_settings
from app.domain.join_state import CancelReason, FailReason, JoinStatus, NotPlannedReason, RequeueReason

log = logging.getLogger(__name__)
PREFIX = "pal"
CONTENT_TYPE = CONTENT_TYPE_LATEST
OTHER = "other"

# --- closed label sets --------------------------------------------------------------------------

# What became of one calendar object for one recipient PAL (process_inbound's outcomes), plus
# the message-level ends: no invitation in it, or ingestion gave up.
INVITE_OUTCOMES = frozenset({
    "accepted", "declined", "rejected",  # a new or changed invitation, and the PAL's answer
    "cancelled", "removed",              # the organizer cancelled it / uninvited the PAL
    "stale", "ignored", "spoof", "unauthenticated",
    "not_an_invite", "failed",
})
INBOUND_SOURCES = frozenset({"smtp", "webhook"})
SMTP_RECIPIENT_RESULTS = frozenset({"accepted", "unknown", "too_many", "error"})
# One attempt at sending one iMIP reply: sent, failed (retried later), gave_up (MAX_ATTEMPTS).
REPLY_RESULTS = frozenset({"sent", "failed", "gave_up"})
# One attempt at delivering one webhook (app code of branch `webhooks` calls count_webhook_delivery).
WEBHOOK_RESULTS = frozenset({"delivered", "failed", "timeout", "refused", "gave_up"})
JOIN_STATUSES = frozenset(str(s) for s in JoinStatus)
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
GRAPHQL_OPERATION_TYPES = frozenset({"query", "mutation", "subscription", "unknown"})
# The reasons the service itself writes; a worker adds its bots' (allow_join_reasons).
_join_reasons: set[str] = {str(r) for enum in (CancelReason, FailReason, RequeueReason, NotPlannedReason)
                           for r in enum}
_ERROR_REASON = re.compile(r"^error\b")

# --- the metrics --------------------------------------------------------------------------------

INVITES_RECEIVED = Counter(
    f"{PREFIX}_invites_received", "Calendar objects handled for one recipient PAL, by outcome.", ["outcome"])
INBOUND_MESSAGES = Counter(
    f"{PREFIX}_inbound_messages", "Messages stored for ingestion, by the door they came in by.", ["source"])
SMTP_RECIPIENTS = Counter(
    f"{PREFIX}_smtp_recipients", "RCPT TO commands answered by the inbound SMTP server, by result.", ["result"])
REPLIES = Counter(
    f"{PREFIX}_replies", "Attempts at sending an iMIP reply through the relay, by result.", ["result"])
WEBHOOK_DELIVERIES = Counter(
    f"{PREFIX}_webhook_deliveries", "Attempts at delivering a webhook to a customer endpoint, by result.",
    ["result"])
JOIN_TRANSITIONS = Counter(
    f"{PREFIX}_joins", "Joins entering a status, by status and reason (empty: none).", ["status", "reason"])
JOIN_ASK_DELAY = Histogram(
    f"{PREFIX}_join_ask_delay_seconds",
    "From a join's join_at to its bot asking to join (waiting room or straight in).",
    buckets=(1, 2, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300, 600, 1800))
BOTS_RUNNING = Gauge(f"{PREFIX}_bots_running", "Meeting bots (Chromiums) running in this worker.")
BOT_SLOTS = Gauge(f"{PREFIX}_bot_slots", "Bots this worker may run at once (MAX_BOTS_PER_WORKER).")
SUBSCRIPTIONS_OPEN = Gauge(
    f"{PREFIX}_graphql_subscriptions_open", "GraphQL operations running on this API process's websockets.")
WEBSOCKETS_OPEN = Gauge(
    f"{PREFIX}_graphql_websockets_open", "Acknowledged graphql-transport-ws connections on this API process.")
HTTP_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds", "HTTP requests to the API, by method, route template and status.",
    ["method", "route", "status"])
GRAPHQL_DURATION = Histogram(
    f"{PREFIX}_graphql_request_duration_seconds", "GraphQL queries and mutations, by operation type and result.",
    ["operation_type", "result"])
# Read from PostgreSQL and Redis when the API is scraped (app/services/observability.py).
OUTBOX_BACKLOG = Gauge(f"{PREFIX}_outbox_backlog", "Deliveries waiting to be sent, by kind.", ["kind"])
OUTBOX_OLDEST_AGE = Gauge(
    f"{PREFIX}_outbox_oldest_age_seconds", "Age of the oldest delivery still waiting, by kind (0: none).", ["kind"])
QUEUE_JOBS = Gauge(
    f"{PREFIX}_queue_jobs", "Jobs in the arq queue: due (waiting for a worker) or deferred (scheduled later).",
    ["state"])
SCRAPE_SOURCE_UP = Gauge(
    f"{PREFIX}_scrape_source_up", "Whether this scrape could read PostgreSQL / Redis for the gauges above.",
    ["source"])


# --- helpers the code calls ---------------------------------------------------------------------

def _closed(value: Any, allowed: Iterable[str]) -> str:
    text = str(value) if value is not None else ""
    return text if text in allowed else OTHER


def invite_outcome(outcome: dict[str, Any]) -> str:
    """The label of one entry of process_inbound's `outcomes` (app/services/invites.py)."""
    if "dropped" in outcome:
        return "unauthenticated" if outcome["dropped"] == "unauthenticated" else "ignored"
    if "ignored" in outcome:
        return "ignored"
    kind = outcome.get("outcome")
    if kind in ("created", "updated"):
        return _closed(outcome.get("decision"), ("accepted", "declined", "rejected"))
    if kind in ("cancelled", "instances_cancelled"):
        return "cancelled"
    return _closed(kind, ("removed", "stale", "ignored", "spoof"))


def count_invites(result: dict[str, Any]) -> None:
    """Count one processed message's outcomes; a message with none is not_an_invite."""
    try:
        outcomes = result.get("outcomes")
        if not outcomes:
            INVITES_RECEIVED.labels("failed" if "failed" in result else "not_an_invite").inc()
            return
        for outcome in outcomes:
            INVITES_RECEIVED.labels(invite_outcome(outcome)).inc()
    except Exception:  # metrics never break the work they count
        log.exception("could not count invites")


def count_inbound_message(source: str) -> None:
    INBOUND_MESSAGES.labels(_closed(source, INBOUND_SOURCES)).inc()


def count_smtp_recipient(result: str) -> None:
    SMTP_RECIPIENTS.labels(_closed(result, SMTP_RECIPIENT_RESULTS)).inc()


def count_reply(result: str) -> None:
    REPLIES.labels(_closed(result, REPLY_RESULTS)).inc()


def count_webhook_delivery(result: str) -> None:
    """One attempt at delivering one webhook: delivered (2xx), failed (other answer, retried),
    timeout (no answer in time), refused (address not allowed: never sent), gave_up (the last
    attempt failed). For the deliveries code of branch `webhooks`: call it once per attempt."""
    WEBHOOK_DELIVERIES.labels(_closed(result, WEBHOOK_RESULTS)).inc()


def allow_join_reasons(reasons: Iterable[str]) -> None:
    """Add reasons a process writes besides the service's own (a worker: its bots' reasons)."""
    _join_reasons.update(str(r) for r in reasons)


def join_reason(reason: str | None) -> str:
    if not reason:
        return ""
    if reason in _join_reasons:
        return reason
    return "error" if _ERROR_REASON.match(reason) else OTHER


def count_join(status: str, reason: str | None) -> None:
    JOIN_TRANSITIONS.labels(_closed(status, JOIN_STATUSES), join_reason(reason)).inc()


def observe_join_ask_delay(join_at: datetime | None, now: datetime) -> None:
    if join_at is not None:
        JOIN_ASK_DELAY.observe(max((now - join_at).total_seconds(), 0.0))


# Every request looks its histogram child up by label values (~2 µs in prometheus_client);
# the values come from closed sets, so the children are few and are kept.
@functools.lru_cache(maxsize=2048)
def _http_child(method: str, route: str | None, status: int) -> Any:
    return HTTP_DURATION.labels(_closed(method, HTTP_METHODS), route or "unmatched", str(status))


@functools.lru_cache(maxsize=16)
def _graphql_child(operation_type: str, ok: bool) -> Any:
    return GRAPHQL_DURATION.labels(_closed(operation_type, GRAPHQL_OPERATION_TYPES), "ok" if ok else "error")


def observe_http(method: str, route: str | None, status: int, seconds: float) -> None:
    _http_child(method, route, status).observe(seconds)


def observe_graphql(operation_type: str, ok: bool, seconds: float) -> None:
    _graphql_child(operation_type, ok).observe(seconds)


def authorized(authorization: str | None) -> bool:
    """Whether a scrape may read the metrics: always without METRICS_TOKEN, else only with
    `Authorization: Bearer <METRICS_TOKEN>` (compared in constant time)."""
    token = get_settings().metrics_token
    if not token:
        return True
    return hmac.compare_digest((authorization or "").encode(), f"Bearer {token}".encode())


def render() -> bytes:
    """This process's metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)


# Zero-valued series from the start, so rate() and absent() behave before the first event.
for _outcome in INVITE_OUTCOMES:
    INVITES_RECEIVED.labels(_outcome)
for _result in REPLY_RESULTS:
    REPLIES.labels(_result)
for _result in WEBHOOK_RESULTS:
    WEBHOOK_DELIVERIES.labels(_result)
