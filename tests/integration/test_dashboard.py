"""The /status dashboard in headless Chromium, driven through an invite, a join and a failure.

Real API process (uvicorn), real PostgreSQL and Redis; invitations go through the real ingestion
service, join states come from a separate worker process, as in production. The browser runs
in Asia/Tokyo (CDP timezone override), so "times in the viewer's time zone" is checked against a
zone that is not the server's. Screenshots go to .data/screenshots/ (CI keeps them).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from nodriver import cdp

from app.domain.ids import new_public_id
from app.services import pals as pal_service
from app.services import transcripts
from app.services.accounts import authenticate
from app.services.inbound import store_message
from app.services.invites import process_inbound
from app.tables import Conversation, Join
from tests.integration.test_live_status import ROOT, live_server, status, worker_process  # noqa: F401
from tests.integration.test_status_page import CHROMIUM, js, tab, wait_for  # noqa: F401  (tab is a fixture)
from tests.invite_factory import calendar, invite_email, vevent

pytestmark = [pytest.mark.browser, pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium")]

PAL = "dash-anna@tavusinvite.com"
ZONE = "Asia/Tokyo"
SHOTS = ROOT / ".data" / "screenshots"


async def invite(organizer: str, summary: str, start: datetime, uid: str) -> None:
    now = datetime.now(timezone.utc)
    ics = calendar("REQUEST", vevent(uid=uid, start=start, end=start + timedelta(minutes=30), organizer=organizer,
                                     attendees=[PAL], summary=summary, dtstamp=now))
    message = invite_email(ics, organizer=organizer, to=PAL)
    pk = await store_message(message.as_bytes(), envelope_from=organizer, recipients=[PAL], source="smtp", now=now)
    await process_inbound(pk, now=now)


async def shot(tab, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    await tab.save_screenshot(str(SHOTS / f"dashboard-{name}.png"), format="png", full_page=True)


def rows(pal_id: str, what: str) -> str:
    return (f"[...document.querySelectorAll('#pal-{pal_id} ul.{what} li[data-join-id]')]"
            ".map(li => [li.dataset.status, li.textContent])")


async def test_the_dashboard_follows_an_invite_a_join_and_a_failure(tab, api_key, other_api_key, redis_queue):
    account = await authenticate(api_key)
    view = await pal_service.create_pal(account.id, {
        "pal_name": "Anna", "default_face_id": "r90bbd427f71",
        "layers": {"conferencing": {"username": "dash-anna", "allowlist": [".*@acme\\.com"]}}})
    other = await authenticate(other_api_key)
    await pal_service.create_pal(other.id, {"pal_name": "Stranger", "default_face_id": "r90bbd427f71"})
    pal_id = view["pal_id"]
    start = (datetime.now(timezone.utc) + timedelta(minutes=6)).replace(second=0, microsecond=0)
    await invite("alex@acme.com", "Weekly planning", start, "dash-1@google.com")
    await invite("mallory@evil.example", "Totally legit", start + timedelta(hours=1), "dash-2@google.com")
    join = await Join.select().where(Join.status == "scheduled").first()

    # The viewer is in Tokyo: every time on the page is Tokyo's.
    await tab.send(cdp.emulation.set_timezone_override(timezone_id=ZONE))
    await (await tab.select("#api-key")).send_keys(api_key)
    await (await tab.select("button[type=submit]")).click()
    await wait_for(tab, "document.getElementById('connection').dataset.state", "live")
    assert await js(tab, "document.getElementById('zone').textContent") == f"Times in {ZONE}."
    assert await js(tab, "[...document.querySelectorAll('section.pal h2')].map(h => h.textContent)") == ["Anna"]

    # The invitations: title, organizer, decision (and why not), platform.
    meetings = (f"[...document.querySelectorAll('#pal-{pal_id} table.meetings tbody tr')].map(tr => "
                "[...tr.querySelectorAll('td')].map(td => td.textContent))")
    await wait_for(tab, f"{meetings}.length", 2)
    table = {row[0]: row for row in await js(tab, meetings)}
    assert table["Weekly planning"][1] == "alex@acme.com" and table["Weekly planning"][3] == "accepted"
    assert table["Weekly planning"][4] == "google meet"
    tokyo = start.astimezone(ZoneInfo(ZONE)).strftime("%H:%M")
    assert tokyo in table["Weekly planning"][2] and "(in " in table["Weekly planning"][2], table
    assert table["Totally legit"][3].startswith("rejected") and len(table["Totally legit"][3]) > len("rejected")
    # The upcoming join, in Tokyo time and counted down; the recent log is there on load.
    upcoming = await js(tab, rows(pal_id, "upcoming"))
    assert len(upcoming) == 1 and upcoming[0][0] == "SCHEDULED" and "Weekly planning" in upcoming[0][1]
    assert tokyo in upcoming[0][1] and ("in 5 min" in upcoming[0][1] or "in 6 min" in upcoming[0][1]), upcoming
    log = await js(tab, f"[...document.querySelectorAll('#pal-{pal_id} ul.log li')].map(li => li.dataset.kind)")
    assert "INVITE_ACCEPTED" in log and "INVITE_REJECTED" in log, log
    await shot(tab, "1-invited")

    # The join: a worker takes it into the call; its live transcript shows.
    rows_ = await Conversation.insert(Conversation(
        conversation_id=new_public_id("c"), account=account.id, pal=join["pal"], face_id="r90bbd427f71",
        meeting_url=join["meeting_url"], created_at=datetime.now(timezone.utc))).returning(Conversation.id)
    await Join.update({Join.conversation: rows_[0]["id"]}).where(Join.id == join["id"])
    now = datetime.now(timezone.utc)
    await transcripts.append(rows_[0]["id"], "speech", "Bob Smith", "Anna, what is on the agenda?", at=now, now=now)
    await worker_process(status(join["id"], "dispatching"), status(join["id"], "joining"),
                         status(join["id"], "in_call"))
    await wait_for(tab, f"{rows(pal_id, 'live')}.map(r => r[0])", ["IN_CALL"])
    await wait_for(tab, f"[...document.querySelectorAll('#pal-{pal_id} ul.live .transcript li')]"
                        ".map(li => li.textContent)", ["Bob Smith: Anna, what is on the agenda?"])
    assert await js(tab, rows(pal_id, "upcoming")) == []
    await shot(tab, "2-in-call")

    # The failure: it ends failed, and past joins say why, with the history.
    await worker_process(status(join["id"], "failed", "denied"))
    await wait_for(tab, f"{rows(pal_id, 'live')}.length", 0)
    await wait_for(tab, f"{rows(pal_id, 'past')}.map(r => r[0])", ["FAILED"])
    past = (await js(tab, rows(pal_id, "past")))[0][1]
    assert "denied" in past and "joining" in past and "in call" in past, past
    await shot(tab, "3-failed")

    # Search hides the PALs that do not match.
    await (await tab.select("#search")).send_keys("nobody")
    await wait_for(tab, f"document.getElementById('pal-{pal_id}').hidden", True)
    assert all((SHOTS / f"dashboard-{n}.png").stat().st_size > 1000 for n in ("1-invited", "2-in-call", "3-failed"))


async def test_recent_events_newest_first_over_graphql(live_server, api_key):
    import httpx

    from tests.integration.test_live_status import make_join, make_pal

    anna = await make_pal(api_key, "anna")
    join_id = await make_join(anna, in_minutes=0)
    await worker_process(status(join_id, "joining"), status(join_id, "in_call"), status(join_id, "left"))
    query = """query($id: ID!, $after: String) { pal(palId: $id) {
      events(first: 2, newestFirst: true, after: $after) { nodes { kind } pageInfo { endCursor hasNextPage } } } }"""
    async with httpx.AsyncClient(base_url=live_server.base_url, headers={"x-api-key": api_key}) as http:
        first = (await http.post("/graphql", json={"query": query, "variables": {"id": anna.pal_id}})).json()
        page = first["data"]["pal"]["events"]
        assert [n["kind"] for n in page["nodes"]] == ["LEFT", "IN_CALL"] and page["pageInfo"]["hasNextPage"]
        second = (await http.post("/graphql", json={"query": query, "variables": {
            "id": anna.pal_id, "after": page["pageInfo"]["endCursor"]}})).json()
        assert [n["kind"] for n in second["data"]["pal"]["events"]["nodes"]] == ["JOINING"]
    await asyncio.sleep(0)


async def test_many_pals_load_a_page_at_a_time(tab, api_key):
    from tests.integration.test_live_status import make_pal

    for n in range(23):
        await make_pal(api_key, f"pal{n:02d}")
    await (await tab.select("#api-key")).send_keys(api_key)
    await (await tab.select("button[type=submit]")).click()
    await wait_for(tab, "document.querySelectorAll('section.pal').length", 20)
    assert await js(tab, "document.getElementById('more').hidden") is False
    await (await tab.select("#more")).click()
    await wait_for(tab, "document.querySelectorAll('section.pal').length", 23)
    assert await js(tab, "document.getElementById('more').hidden") is True
    await (await tab.select("#search")).send_keys("pal07")
    await wait_for(tab, "[...document.querySelectorAll('section.pal:not([hidden]) h2')].map(h => h.textContent)",
                   ["Pal07"])
