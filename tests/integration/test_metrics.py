"""GET /metrics and GET /readyz of the API, after real actions (in one process: the API app,
the inbound SMTP server on loopback, an arq worker over the real queue, a real relay).

Counters are compared before and after each action, so the tests hold whatever ran
before them in the session. The same metrics served by separate API, worker and SMTP
processes: tests/integration/test_metrics_processes.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import aiosmtplib
import pytest

from app import db
from app.config import reset_settings
from app.keys import ARQ_QUEUE
from app.redis_client import close_redis
from app.services import pals as pal_service
from app.services.accounts import create_account
from app.services.observability import refresh_scrape_gauges
from app.tables import Delivery
from tests.fixtures import graphql, run_worker
from tests.integration.test_ingestion import _RECORD, acme_signed
from tests.invite_factory import meeting
from tests.scrape import Scrape
from tests.servers import free_port

FACE = "r90bbd427f71"
PAL_ADDRESS = "acme-mona@tavusinvite.com"
MEET = "https://meet.google.com/xgq-epxn-ccp"


@pytest.fixture(autouse=True)
def acme_dkim_key(monkeypatch):
    monkeypatch.setattr("app.services.invites.dns_txt",
                        lambda name, timeout=2: _RECORD if name == b"sel._domainkey.acme.com." else None)


@pytest.fixture(autouse=True)
def no_metrics_token(monkeypatch):
    monkeypatch.delenv("METRICS_TOKEN", raising=False)
    reset_settings()
    yield
    reset_settings()


@pytest.fixture
async def pal(clean_db):
    account, _ = await create_account("acme")
    return await pal_service.create_pal(account.id, {
        "pal_name": "Mona", "default_face_id": FACE,
        "layers": {"conferencing": {"username": "acme-mona", "allowlist": [".*@acme\\.com"]}},
    })


async def scrape(client) -> Scrape:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    return Scrape(response.text)


async def send_invite(port: int, message, to: str = PAL_ADDRESS) -> None:
    await aiosmtplib.send(acme_signed(message), hostname="127.0.0.1", port=port, sender="alex@acme.com",
                          recipients=[to])


async def test_an_invite_through_smtp_moves_intake_invite_reply_and_join_counters(
        pal, client, inbound_smtp, smtp_sink, redis_queue):
    before = await scrape(client)
    _, message = meeting(start_in=timedelta(days=2), pal_address=PAL_ADDRESS)
    await send_invite(inbound_smtp, message)
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):  # an unknown PAL is refused at RCPT
        await send_invite(inbound_smtp, message, to="nobody-here@tavusinvite.com")
    await run_worker()
    assert len(smtp_sink.messages) == 1  # the REPLY really went out
    after = await scrape(client)

    assert after.delta(before, "pal_smtp_recipients_total", result="accepted") == 1
    assert after.delta(before, "pal_smtp_recipients_total", result="unknown") == 1
    assert after.delta(before, "pal_inbound_messages_total", source="smtp") == 1
    assert after.delta(before, "pal_invites_received_total", outcome="accepted") == 1
    assert after.delta(before, "pal_invites_received_total", outcome="declined") == 0
    assert after.delta(before, "pal_replies_total", result="sent") == 1
    assert after.delta(before, "pal_replies_total", result="failed") == 0
    assert after.delta(before, "pal_joins_total", status="scheduled", reason="") == 1
    # Nothing waits in the outbox or the queue (the join, two days out, is not queued yet).
    assert after.value("pal_outbox_backlog", kind="email") == 0
    assert after.has("pal_queue_jobs", state="due") and after.value("pal_queue_jobs", state="due") == 0
    assert after.value("pal_scrape_source_up", source="postgresql") == 1
    assert after.value("pal_scrape_source_up", source="redis") == 1


async def test_a_declined_invite_and_a_refusing_relay(pal, client, inbound_smtp, smtp_sink, redis_queue):
    smtp_sink.refuse = True
    before = await scrape(client)
    _, message = meeting(start_in=timedelta(days=2), pal_address=PAL_ADDRESS, link=None)  # no Meet link
    await send_invite(inbound_smtp, message)
    await run_worker()
    after = await scrape(client)
    assert after.delta(before, "pal_invites_received_total", outcome="declined") == 1
    assert after.delta(before, "pal_invites_received_total", outcome="accepted") == 0
    assert after.delta(before, "pal_replies_total", result="failed") == 1
    assert after.delta(before, "pal_replies_total", result="sent") == 0
    assert after.value("pal_outbox_backlog", kind="email") == 1  # waiting for its retry
    assert after.delta(before, "pal_joins_total", status="scheduled", reason="") == 0


async def test_outbox_backlog_and_oldest_age_are_read_at_scrape_time(clean_db, redis_queue):
    """With an injected clock: two replies waiting, the oldest for 300 s; sent ones don't count."""
    now = datetime(2031, 3, 4, 12, 0, tzinfo=timezone.utc)
    for n, (age, status) in enumerate([(300, "pending"), (60, "pending"), (9000, "sent"), (8000, "failed")]):
        await Delivery.insert(Delivery(
            delivery_id=f"d{n}", kind="email", pal=None, dedupe_key=f"k{n}", body=b"x",
            meta={"mail_from": "a@tavusinvite.com", "rcpt_to": "b@acme.com"},
            status=status, attempts=0, next_attempt_at=now, created_at=now - timedelta(seconds=age)))
    await redis_queue.zadd(ARQ_QUEUE, {"due-1": (now.timestamp() - 5) * 1000, "due-2": now.timestamp() * 1000,
                                       "later": (now.timestamp() + 60) * 1000})
    await refresh_scrape_gauges(now)
    from prometheus_client import generate_latest

    after = Scrape(generate_latest().decode())
    assert after.value("pal_outbox_backlog", kind="email") == 2
    assert after.value("pal_outbox_oldest_age_seconds", kind="email") == 300
    assert after.value("pal_queue_jobs", state="due") == 2
    assert after.value("pal_queue_jobs", state="deferred") == 1
    await Delivery.delete(force=True)
    await refresh_scrape_gauges(now)
    empty = Scrape(generate_latest().decode())
    assert empty.value("pal_outbox_backlog", kind="email") == 0
    assert empty.has("pal_outbox_oldest_age_seconds", kind="email")
    assert empty.value("pal_outbox_oldest_age_seconds", kind="email") == 0


async def test_join_status_changes_are_counted_by_status_and_reason(client, api_key, redis_queue):
    headers = {"x-api-key": api_key}
    pal_id = (await client.post("/v2/pals", headers=headers, json={
        "pal_name": "Anna", "default_face_id": FACE, "layers": {"conferencing": {"username": "anna"}}})).json()["pal_id"]
    before = await scrape(client)
    created = await client.post("/v2/conversations", headers=headers, json={"pal_id": pal_id, "meeting_url": MEET})
    assert created.status_code == 200, created.text
    ended = await client.post(f"/v2/conversations/{created.json()['conversation_id']}/end", headers=headers)
    assert ended.status_code == 200 and ended.json()["status"] == "cancelled"
    after = await scrape(client)
    assert after.delta(before, "pal_joins_total", status="scheduled", reason="") == 1
    assert after.delta(before, "pal_joins_total", status="cancelled", reason="ended_by_api") == 1
    assert after.delta(before, "pal_joins_total", status="cancelled", reason="other") == 0
    # No tenant data in any label: ids, addresses and meeting links stay out of /metrics.
    for secret in (pal_id, created.json()["conversation_id"], "xgq-epxn-ccp", "anna", api_key):
        assert secret not in after.text


async def test_graphql_and_http_latency_by_operation_type_and_route_template(client, api_key):
    before = await scrape(client)
    ok = await graphql(client, api_key, "{ pals { nodes { palId } } }")
    assert "errors" not in ok
    failed = await graphql(client, api_key, 'mutation { deletePal(palId: "pnope") }')
    assert failed["errors"]
    broken = await client.post("/graphql", json={"query": "{ pals { "}, headers={"x-api-key": api_key})
    assert broken.status_code == 200 and broken.json()["errors"]
    unauthenticated = await client.post("/graphql", json={"query": "{ pals { nodes { palId } } }"})
    assert unauthenticated.status_code == 401
    assert (await client.get("/v2/pals/psecret123", headers={"x-api-key": api_key})).status_code == 404
    assert (await client.get("/no/such/psecret456")).status_code == 404
    after = await scrape(client)

    count = "pal_graphql_request_duration_seconds_count"
    assert after.delta(before, count, operation_type="query", result="ok") == 1
    assert after.delta(before, count, operation_type="mutation", result="error") == 1
    assert after.delta(before, count, operation_type="unknown", result="error") == 1  # did not parse
    assert after.value("pal_graphql_request_duration_seconds_sum", operation_type="query", result="ok") > 0
    http = "pal_http_request_duration_seconds_count"
    assert after.delta(before, http, method="POST", route="/graphql", status="200") == 3
    assert after.delta(before, http, method="POST", route="/graphql", status="401") == 1
    assert after.delta(before, http, method="GET", route="/v2/pals/{pal_id}", status="404") == 1
    assert after.delta(before, http, method="GET", route="unmatched", status="404") == 1
    assert after.delta(before, http, method="GET", route="/metrics", status="200") == 1  # the first scrape
    # Route templates, never raw paths: ids and junk paths create no series.
    assert "psecret" not in after.text


async def test_metrics_token_guards_metrics_but_needs_no_api_key(client, api_key, monkeypatch):
    assert (await client.get("/metrics")).status_code == 200  # no token set: open, like /healthz
    monkeypatch.setenv("METRICS_TOKEN", "scrape-me")
    reset_settings()
    for headers in ({}, {"authorization": "Bearer nope"}, {"x-api-key": api_key},
                    {"authorization": "Basic scrape-me"}):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 401, headers
        assert "METRICS_TOKEN" in refused.json()["error"]
        assert refused.headers["www-authenticate"].startswith("Bearer")
    allowed = await client.get("/metrics", headers={"authorization": "Bearer scrape-me"})
    assert allowed.status_code == 200 and "pal_http_request_duration_seconds" in allowed.text


# --- /readyz ---------------------------------------------------------------------------------------

async def test_readyz_is_200_when_postgresql_and_redis_answer(client, redis_queue):
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "checks": {"postgresql": "ok", "redis": "ok"}}
    assert (await client.get("/healthz")).status_code == 200


async def test_readyz_is_503_naming_redis_when_redis_is_unreachable(client, redis_queue, monkeypatch):
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    reset_settings()
    await close_redis()
    try:
        response = await client.get("/readyz")
        assert response.status_code == 503, response.text
        checks = response.json()["checks"]
        assert response.json()["status"] == "unavailable"
        assert checks["postgresql"] == "ok"
        assert checks["redis"].startswith("unreachable"), checks
        assert "127.0.0.1" not in response.text  # says what failed, not where it lives
        assert (await client.get("/healthz")).status_code == 200  # liveness does not depend on Redis
        scraped = await scrape(client)  # /metrics still answers, without the gauges Redis feeds
        assert scraped.value("pal_scrape_source_up", source="redis") == 0
        assert not scraped.has("pal_queue_jobs", state="due")
    finally:
        await close_redis()
        monkeypatch.undo()
        reset_settings()


async def test_readyz_is_503_naming_postgresql_when_postgresql_is_unreachable(client, redis_queue):
    engine = db.engine()
    dsn = engine.config["dsn"]
    await db.close_pool()
    engine.config["dsn"] = f"postgresql://postgres@127.0.0.1:{free_port()}/pal"  # nothing listens there
    try:
        response = await client.get("/readyz")
        assert response.status_code == 503, response.text
        assert response.json()["checks"]["redis"] == "ok"
        assert response.json()["checks"]["postgresql"].startswith("unreachable"), response.json()
    finally:
        engine.config["dsn"] = dsn
        await db.open_pool(min_size=1, max_size=10)
    assert (await client.get("/readyz")).status_code == 200
