"""The whole path with every real part: SMTP invite or API call -> Redis -> arq worker ->
Chromium (nodriver) -> the Meet look-alike over HTTPS, statuses stored in PostgreSQL."""

from __future__ import annotations

import asyncio
import random
import shutil
import string
from datetime import timedelta

import aiosmtplib
import pytest

from app.tables import Join, JoinStatusChange
from tests.fixtures import run_worker
from tests.invite_factory import meeting

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium not installed (apt-get install chromium)"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
]
PAL = "acme-anna@tavusinvite.com"


def new_code() -> str:
    part = lambda n: "".join(random.choice(string.ascii_lowercase) for _ in range(n))  # noqa: E731
    return f"{part(3)}-{part(4)}-{part(3)}"


@pytest.fixture
def pal(invited_pal):
    return invited_pal


async def history(join_pk: int) -> list[str]:
    rows = await JoinStatusChange.select().where(JoinStatusChange.join == join_pk).order_by(JoinStatusChange.id)
    return [r["status"] for r in rows]


async def test_invite_for_a_meeting_in_progress_sends_the_bot_into_the_meet(
        pal, inbound_smtp, smtp_sink, redis_queue, meet_lookalike):
    code = new_code()
    url = meet_lookalike.configure(code, "ended", admit_after=1.0, end_after=4.0)
    assert url == f"https://meet.google.com/{code}"
    _, message = meeting(start_in=-timedelta(minutes=10), duration=timedelta(hours=1), pal_address=PAL, link=url)
    message["Authentication-Results"] = "mx.pal-tests.invalid; dkim=pass header.d=acme.com"
    await aiosmtplib.send(message, hostname="127.0.0.1", port=inbound_smtp, sender="alex@acme.com", recipients=[PAL])
    await run_worker()  # ingest, reply, and the join (due at once) all run on this worker

    record = meet_lookalike.record(code)
    assert record.name == "Anna" and record.join_button == "Ask to join"
    assert record.camera_on_at_join and record.mic_on_at_join and record.admitted
    # Every bot run has a conversation (the media bridge): once admitted the PAL says its
    # face's greeting through the injected microphone.
    assert record.video_live() and record.audio_live()
    [join] = await Join.select()
    assert (join["status"], join["reason"]) == ("left", "meeting_ended")
    assert join["conversation"] is not None
    assert await history(join["id"]) == ["scheduled", "dispatching", "joining", "waiting_room", "in_call", "left"]
    assert any(m["Subject"].startswith("Accepted") for m in smtp_sink.parsed())


async def test_api_dispatch_join_watch_and_end(pal, client, redis_queue, meet_lookalike):
    _, key = pal
    code = new_code()
    url = meet_lookalike.configure(code, "admit", admit_after=0.5)
    response = await client.post("/v2/conversations", headers={"x-api-key": key},
                                 json={"pal_id": pal[0]["pal_id"], "meeting_url": url, "face_id": "r3c1f0a2b9d4"})
    assert response.status_code == 200, response.text
    conversation = response.json()["conversation_id"]
    worker = asyncio.create_task(run_worker())
    status_url = f"/v2/conversations/{conversation}"
    for _ in range(300):
        status = (await client.get(status_url, headers={"x-api-key": key})).json()["status"]
        if status == "in_call" or worker.done():
            break
        await asyncio.sleep(0.1)
    assert status == "in_call"
    ended = await client.post(f"{status_url}/end", headers={"x-api-key": key})
    assert ended.status_code == 200
    await asyncio.wait_for(worker, timeout=60)
    final = (await client.get(status_url, headers={"x-api-key": key})).json()
    assert (final["status"], final["reason"]) == ("left", "stopped")
    assert meet_lookalike.record(code).leave_clicked
