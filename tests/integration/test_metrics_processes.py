"""Each process serves its own /metrics: `python -m app serve`, `python -m app smtp` and
`python -m app worker` run as real processes on loopback against the test PostgreSQL and
Redis, and are scraped over HTTP (with METRICS_TOKEN) after real actions: an invite and
its CANCEL through SMTP, GraphQL over HTTP and a websocket subscription, and (with
Chromium) a bot that joins the Meet look-alike and leaves. Fresh processes start at zero,
so these values are absolute.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiosmtplib
import httpx
import pytest
from websockets.asyncio.client import connect

from app.services import pals as pal_service
from app.services.accounts import create_account
from app.services.conversations import create_conversation, end_conversation
from tests.invite_factory import calendar, invite_email, vevent
from tests.scrape import Scrape
from tests.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "scrape-token-for-tests"
AUTH = {"authorization": f"Bearer {TOKEN}"}
PAL_ADDRESS = "acme-nina@tavusinvite.com"


@dataclass
class Processes:
    env: dict[str, str]
    api: str = ""
    worker: str = ""
    smtp: str = ""
    smtp_port: int = 0
    running: list[tuple[str, subprocess.Popen]] = field(default_factory=list)
    logs: Path | None = None

    def start(self, name: str, *args: str) -> None:
        assert self.logs is not None
        out = open(self.logs / f"{name}.log", "wb")
        self.running.append((name, subprocess.Popen([sys.executable, "-m", "app", *args], cwd=ROOT, env=self.env,
                                                    stdout=out, stderr=subprocess.STDOUT)))

    def log(self, name: str) -> str:
        assert self.logs is not None
        return (self.logs / f"{name}.log").read_text(errors="replace")

    async def scrape(self, base: str) -> Scrape:
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(f"{base}/metrics", headers=AUTH)
        assert response.status_code == 200, response.text
        return Scrape(response.text)

    async def until(self, base: str, check: Callable[[Scrape], bool], what: str, timeout: float = 30) -> Scrape:
        deadline = time.monotonic() + timeout
        while True:
            scraped = await self.scrape(base)
            if check(scraped):
                return scraped
            for name, proc in self.running:
                assert proc.poll() is None, f"{name} exited:\n{self.log(name)}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.2)

    def stop(self) -> None:
        for _, proc in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in self.running:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_up(url: str, process: Processes, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as http:
        while True:
            try:
                if (await http.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            for name, proc in process.running:
                assert proc.poll() is None, f"{name} exited:\n{process.log(name)}"
            assert time.monotonic() < deadline, f"{url} never answered"
            await asyncio.sleep(0.1)


@asynccontextmanager
async def stack(tmp_path: Path, *names: str, **extra_env: str) -> AsyncIterator[Processes]:
    """The named processes (serve, smtp, worker), each with its metrics on a free loopback port."""
    api_port, smtp_port, worker_metrics, smtp_metrics = (free_port() for _ in range(4))
    env = {**os.environ, "API_HOST": "127.0.0.1", "API_PORT": str(api_port), "SMTP_HOST": "127.0.0.1",
           "SMTP_PORT": str(smtp_port), "METRICS_HOST": "127.0.0.1", "WORKER_METRICS_PORT": str(worker_metrics),
           "SMTP_METRICS_PORT": str(smtp_metrics), "METRICS_TOKEN": TOKEN, "MAX_BOTS_PER_WORKER": "3",
           "LOG_LEVEL": "WARNING", "MEDIA_DIR": str(tmp_path / "media"), **extra_env}
    processes = Processes(env=env, api=f"http://127.0.0.1:{api_port}", worker=f"http://127.0.0.1:{worker_metrics}",
                          smtp=f"http://127.0.0.1:{smtp_metrics}", smtp_port=smtp_port, logs=tmp_path)
    try:
        for name in names:
            processes.start(name, name)
        for name in names:
            await wait_up({"serve": processes.api, "smtp": processes.smtp, "worker": processes.worker}[name]
                          + "/healthz", processes)
        yield processes
    finally:
        processes.stop()


def invitation(method: str, uid: str, start: datetime) -> bytes:
    ics = calendar(method, vevent(uid=uid, start=start, end=start + timedelta(minutes=30), organizer="alex@acme.com",
                                  attendees=[PAL_ADDRESS], sequence=1 if method == "CANCEL" else 0,
                                  status="CANCELLED" if method == "CANCEL" else "CONFIRMED"))
    return invite_email(ics, organizer="alex@acme.com", to=PAL_ADDRESS, method=method).as_bytes()


async def test_api_smtp_and_worker_each_serve_their_metrics(clean_db, redis_queue, tmp_path):
    account, key = await create_account("acme")
    pal = await pal_service.create_pal(account.id, {
        "pal_name": "Nina", "default_face_id": "r90bbd427f71",
        "layers": {"conferencing": {"username": "acme-nina", "allowlist": [".*@acme\\.com"]}}})
    async with stack(tmp_path, "serve", "smtp", "worker") as procs:
        # Every /metrics wants the token; liveness does not.
        async with httpx.AsyncClient(timeout=10) as http:
            for base in (procs.api, procs.smtp, procs.worker):
                assert (await http.get(f"{base}/metrics")).status_code == 401, base
                assert (await http.get(f"{base}/metrics", headers={"x-api-key": key})).status_code == 401, base
        worker = await procs.scrape(procs.worker)
        assert worker.value("pal_bot_slots") == 3 and worker.value("pal_bots_running") == 0
        assert worker.value("pal_invites_received_total", outcome="accepted") == 0

        # An invitation (unsigned: the tests' SENDER_AUTH=mark processes it, and answers nothing).
        start = (datetime.now(timezone.utc) + timedelta(days=2)).replace(microsecond=0)
        await aiosmtplib.send(invitation("REQUEST", "metrics-e2e@google.com", start), hostname="127.0.0.1",
                              port=procs.smtp_port, sender="alex@acme.com", recipients=[PAL_ADDRESS])
        smtp = await procs.scrape(procs.smtp)
        assert smtp.value("pal_smtp_recipients_total", result="accepted") == 1
        assert smtp.value("pal_inbound_messages_total", source="smtp") == 1
        # Counters move one after another inside the worker: wait for all of them, then check.
        worker = await procs.until(procs.worker, lambda s: s.value(
            "pal_invites_received_total", outcome="accepted") == 1 and s.value(
            "pal_joins_total", status="scheduled", reason="") >= 1, "the worker to process the invite")
        assert worker.value("pal_joins_total", status="scheduled", reason="") == 1
        assert worker.value("pal_replies_total", result="sent") == 0  # unauthenticated: never answered

        # Its CANCEL: the worker cancels the join, with the reason as a label.
        await aiosmtplib.send(invitation("CANCEL", "metrics-e2e@google.com", start), hostname="127.0.0.1",
                              port=procs.smtp_port, sender="alex@acme.com", recipients=[PAL_ADDRESS])
        worker = await procs.until(procs.worker, lambda s: s.value(
            "pal_joins_total", status="cancelled", reason="event_cancelled") == 1 and s.value(
            "pal_invites_received_total", outcome="cancelled") >= 1, "the join to be cancelled")
        assert worker.value("pal_invites_received_total", outcome="cancelled") == 1
        assert (await procs.scrape(procs.smtp)).value("pal_inbound_messages_total", source="smtp") == 2

        # The API: GraphQL over HTTP, then a subscription over a websocket.
        async with httpx.AsyncClient(base_url=procs.api, headers={"x-api-key": key}, timeout=10) as http:
            answer = await http.post("/graphql", json={"query": "{ pals { nodes { palId } } }"})
            assert answer.status_code == 200 and "errors" not in answer.json()
        api = await procs.scrape(procs.api)
        assert api.value("pal_graphql_request_duration_seconds_count", operation_type="query", result="ok") == 1
        assert api.value("pal_http_request_duration_seconds_count", method="POST", route="/graphql",
                         status="200") == 1
        assert api.value("pal_graphql_subscriptions_open") == 0
        assert api.value("pal_outbox_backlog", kind="email") == 0
        async with connect(procs.api.replace("http", "ws") + "/graphql", subprotocols=["graphql-transport-ws"]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"apiKey": key}}))
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {
                "query": "subscription($p: ID!) { palEvents(palId: $p) { __typename } }",
                "variables": {"p": pal["pal_id"]}}}))
            assert json.loads(await ws.recv())["type"] == "next"
            api = await procs.scrape(procs.api)
            assert api.value("pal_graphql_subscriptions_open") == 1
            assert api.value("pal_graphql_websockets_open") == 1
        await procs.until(procs.api, lambda s: s.value("pal_graphql_subscriptions_open") == 0
                          and s.value("pal_graphql_websockets_open") == 0, "the subscription to be counted closed")
        # Nothing of the tenant's in any process's metrics.
        for base in (procs.api, procs.smtp, procs.worker):
            text = (await procs.scrape(base)).text
            for secret in (pal["pal_id"], PAL_ADDRESS, "acme", "metrics-e2e", key):
                assert secret not in text, (base, secret)


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium not installed")
@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
async def test_a_bot_in_a_meeting_shows_in_its_workers_metrics(
        clean_db, redis_queue, meet_lookalike, lookalike_browser_args, tmp_path):
    code = "mtx-bots-run"
    url = meet_lookalike.configure(code, "stay", admit_after=0.3)
    account, _ = await create_account("acme")
    pal = await pal_service.create_pal(account.id, {"pal_name": "Anna", "default_face_id": "r90bbd427f71"})
    conversation = await create_conversation(account.id, {"pal_id": pal["pal_id"], "meeting_url": url},
                                             now=datetime.now(timezone.utc))
    async with stack(tmp_path, "worker", BOT_BROWSER_ARGS=lookalike_browser_args) as procs:
        # In the call, and its ask-to-join delay observed (the worker records the status first,
        # then the observation: a scrape can land between the two).
        worker = await procs.until(procs.worker, lambda s: s.value("pal_joins_total", status="in_call", reason="") == 1
                                   and s.value("pal_join_ask_delay_seconds_count") >= 1,
                                   "the bot to be in the call", timeout=90)
        assert worker.value("pal_bots_running") == 1
        assert worker.value("pal_joins_total", status="dispatching", reason="") == 1
        # Asked to join once (the look-alike has a waiting room), soon after join_at (= dispatch time).
        assert worker.value("pal_join_ask_delay_seconds_count") == 1
        assert 0 < worker.value("pal_join_ask_delay_seconds_sum") < 60
        await end_conversation(account.id, conversation["conversation_id"], now=datetime.now(timezone.utc))
        worker = await procs.until(procs.worker, lambda s: s.value("pal_joins_total", status="left",
                                                                   reason="stopped") == 1, "the bot to leave")
        assert worker.value("pal_bots_running") == 0
        assert worker.value("pal_join_ask_delay_seconds_count") == 1
