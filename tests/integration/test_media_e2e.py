"""The media bridge end to end, with every real part.

PostgreSQL, Redis, an arq worker running the real bot in real Chromium against the Meet
look-alike (tones, captions, chat, the far end's AnalyserNode), a real API process (uvicorn on
loopback) and a `websockets` stream client on GET /v2/conversations/{id}/stream.

One long meeting covers HEAR, READ, CHAT both ways, the client's voice, `clear` and `say`, and
another account's key; a second one, planned from an SMTP invite, covers a calendar join's
conversation and transcript.
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import string
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import aiosmtplib
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from app.services.accounts import create_account
from app.tables import Join
from tests.fixtures import run_worker
from tests.integration.test_live_status import LiveServer, start_api
from tests.invite_factory import meeting
from tests.meet_lookalike import MeetLookalike
from workers.meet_bot.pcm import (
    MAX_FRAME_BYTES, SAMPLE_RATE, dominant_frequency, from_samples, rms, sine, split_pcm, to_samples, tone_fraction,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium not installed (apt-get install chromium)"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
]

PAL = "acme-anna@tavusinvite.com"
BOB = "Bob Smith"
CAROL = "Carol Jones"
LINE = "Hello everyone, this is the weekly sync."
CAPTIONS = [  # timed from the moment the bot turns captions on
    {"at": 0.5, "row": "r1", "speaker": BOB, "text": "Hello"},
    {"at": 0.8, "row": "r1", "speaker": BOB, "text": "Hello every"},
    {"at": 1.1, "row": "r1", "speaker": BOB, "text": "Hello everyone this is"},
    {"at": 1.4, "row": "r1", "speaker": BOB, "text": LINE},
]
PARTICIPANT_CHAT = "The agenda is in the doc"
PAL_CHAT = "Hi, I am Anna's PAL"
SAY = "hello everyone, this is the PAL speaking in the meeting"
LOUD = 0.05  # far-end RMS (full scale 1.0); a 0.5-amplitude sine is ~0.35
QUIET = 0.01
CLEAR_BOUND = 0.6  # s, clear sent by the client -> far end quiet: through the API, Redis, worker, page, WebRTC


def new_code() -> str:
    part = lambda n: "".join(random.choice(string.ascii_lowercase) for _ in range(n))  # noqa: E731
    return f"{part(3)}-{part(4)}-{part(3)}"


@pytest.fixture(scope="module")
async def server(database: None) -> AsyncIterator[LiveServer]:
    async with start_api() as live:
        yield live


@pytest.fixture
def pal(invited_pal):
    return invited_pal


class StreamClient:
    """A websockets stream client that keeps everything it receives, with the arrival time."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.audio: list[tuple[float, bytes]] = []
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.closed: int | None = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if isinstance(message, bytes):
                    self.audio.append((time.time(), message))
                else:
                    self.events.append((time.time(), json.loads(message)))
        except ConnectionClosed as closed:
            self.closed = closed.rcvd.code if closed.rcvd else None

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [e for _, e in self.events if e.get("type") == kind]

    async def until(self, check: Callable[[], Any], timeout: float, what: str) -> Any:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            found = check()
            if found:
                return found
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}; events {[e for _, e in self.events][-20:]}")

    def samples_from(self, start: float, seconds: float) -> list[int]:
        out: list[int] = []
        for t, pcm in self.audio:
            if t >= start:
                out.extend(to_samples(pcm))
            if len(out) >= seconds * SAMPLE_RATE:
                break
        return out


def stream_url(server: LiveServer, conversation_id: str) -> str:
    return server.ws_url.replace("/graphql", f"/v2/conversations/{conversation_id}/stream")


def window(samples: list[dict[str, Any]], start: float, end: float) -> list[dict[str, Any]]:
    return [s for s in samples if start <= s["t"] <= end]


def median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


async def close_code(ws: ClientConnection, timeout: float = 15) -> int | None:
    try:
        async with asyncio.timeout(timeout):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


async def test_a_stream_client_hears_reads_chats_and_speaks_in_a_real_meeting(
        pal, server, redis_queue, meet_lookalike: MeetLookalike) -> None:
    view, key = pal
    code = new_code()
    url = meet_lookalike.configure(code, "stay", admit_after=0.5,
                                   tones=[{"freq": 440, "at": 1.0, "gain": 0.3}], captions=CAPTIONS,
                                   chat=[{"at": 2.0, "sender": CAROL, "text": PARTICIPANT_CHAT}])
    rec = meet_lookalike.record(code)
    headers = {"x-api-key": key}
    _, other_key = await create_account("someone else")
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers) as http:
        created = await http.post("/v2/conversations", json={"pal_id": view["pal_id"], "meeting_url": url})
        assert created.status_code == 200, created.text
        cid = created.json()["conversation_id"]
        marks: dict[str, float] = {}
        async with connect(stream_url(server, cid), additional_headers=headers) as ws:
            client = StreamClient(ws)
            await client.until(lambda: client.of("started"), 10, "started")
            worker = asyncio.create_task(run_worker())
            try:
                await client.until(lambda: any(e["status"] == "in_call" for e in client.of("status")) or worker.done(),
                                   90, "in_call")
                assert not worker.done(), client.events
                marks["in_call"] = time.time()

                # 7. Another account's key is refused, while the owner's stream goes on.
                async with connect(stream_url(server, cid), additional_headers={"x-api-key": other_key}) as stranger:
                    assert await close_code(stranger) == 4403

                # 1. HEAR: the 440 Hz participant reaches the client as 440 Hz PCM.
                seen = [0]

                def loud_frame() -> float | None:  # each frame is looked at once
                    for t, pcm in client.audio[seen[0]:]:
                        seen[0] += 1
                        if rms(to_samples(pcm)) > 1000:
                            return t
                    return None

                tone_at = await client.until(loud_frame, 20, "the 440 Hz participant")
                await client.until(lambda: client.audio[-1][0] > tone_at + 1.6, 10, "1.5 s of the tone")
                tone = client.samples_from(tone_at + 0.5, 1.0)
                heard_hz = dominant_frequency(tone)
                fraction = tone_fraction(tone[:4000], 440)
                assert abs(heard_hz - 440) <= 10, heard_hz
                assert fraction > 0.9, fraction
                assert all(0 < len(pcm) <= MAX_FRAME_BYTES and len(pcm) % 2 == 0 for _, pcm in client.audio)

                # 2. READ: the grown caption line arrives once as final, with its speaker.
                def final_lines() -> list[dict[str, Any]]:
                    return [e for e in client.of("transcript") if e["final"] and not e.get("self")]

                await client.until(final_lines, 20, "the final caption line")
                # 6. CHAT in: the participant's message, not the PAL's.
                await client.until(lambda: [e for e in client.of("chat") if not e["self"]], 15, "the participant's chat")
                # 6. CHAT out: the client's message is sent by the PAL and comes back as self.
                await ws.send(json.dumps({"type": "chat", "text": PAL_CHAT}))
                await client.until(lambda: [e for e in client.of("chat") if e["self"]], 15, "the PAL's chat back")
                assert rec.chat_sent == [PAL_CHAT]

                # The greeting (the face's clip, played once admitted) is over: the far end is quiet.
                await client.until(lambda: rec.far_audio and rec.far_audio[-1]["t"] > time.time() - 0.5 and all(
                    s["rms"] < QUIET for s in window(rec.far_audio, time.time() - 0.6, time.time())), 20,
                    "the greeting to end")

                # 3. The client's voice: 880 Hz in 100 ms frames, paced in real time (200 ms ahead).
                frames = split_pcm(from_samples(sine(880, 2.0, amplitude=0.5)), 100)
                marks["tone"] = start = time.time()
                for i, frame in enumerate(frames):
                    await asyncio.sleep(max(0.0, start + 0.1 * i - 0.2 - time.time()))
                    await ws.send(frame)
                # 5. Then 660 Hz streamed in real time, and `clear` once it is heard: the client
                #    stops sending and what the bot and the page still hold is dropped at once.
                marks["after"] = time.time()

                async def stream_660() -> None:
                    begin = time.time()
                    for i, frame in enumerate(split_pcm(from_samples(sine(660, 8.0, amplitude=0.5)), 100)):
                        await asyncio.sleep(max(0.0, begin + 0.1 * i - 0.1 - time.time()))
                        await ws.send(frame)

                sender = asyncio.create_task(stream_660())
                try:
                    await client.until(lambda: len([s for s in window(rec.far_audio, marks["after"], time.time())
                                                    if s["rms"] > LOUD and abs(s["f"] - 660) <= 15]) >= 25,
                                       10, "the 660 Hz tone at the far end")
                finally:
                    sender.cancel()
                marks["clear"] = time.time()
                await ws.send(json.dumps({"type": "clear"}))
                await asyncio.sleep(2.0)  # the far end reports every 200 ms

                # 4. say, on the stream: spoken in the meeting, and a `self` transcript line.
                marks["say"] = time.time()
                await ws.send(json.dumps({"type": "say", "text": SAY}))
                await client.until(lambda: [e for e in client.of("transcript") if e.get("self")], 15, "say reported")
                await client.until(lambda: len([s for s in window(rec.far_audio, marks["say"], time.time())
                                                if s["rms"] > 0.02]) >= 25, 15, "the PAL's speech at the far end")
                marks["said"] = time.time()
            finally:
                ended = await http.post(f"/v2/conversations/{cid}/end")
                await asyncio.wait_for(worker, timeout=60)
            assert ended.status_code == 200, ended.text
            await client.until(lambda: any(e["status"] == "left" for e in client.of("status")), 10, "left")
        transcript = (await http.get(f"/v2/conversations/{cid}/transcript")).json()
        final = (await http.get(f"/v2/conversations/{cid}")).json()

    # 2. One final line, after its partials (same line_id), with the speaker; stored as well.
    finals = [e for e in client.of("transcript") if e["final"] and not e.get("self")]
    assert [(e["speaker"], e["text"]) for e in finals] == [(BOB, LINE)], finals
    partials = [e for e in client.of("transcript") if not e["final"]]
    assert partials and all(e["line_id"] == finals[0]["line_id"] and e["speaker"] == BOB for e in partials)
    # 6. The participant's message once, self false; the PAL's once, self true.
    assert [(e["sender"], e["text"], e["self"]) for e in client.of("chat")] == [
        (CAROL, PARTICIPANT_CHAT, False), ("Anna", PAL_CHAT, True)], client.of("chat")
    # 4. say: one self line on the stream.
    own = [e for e in client.of("transcript") if e.get("self")]
    assert [(e["speaker"], e["text"], e["final"]) for e in own] == [("Anna", SAY, True)], own
    entries = [(e["kind"], e["speaker"], e["text"], e["self"]) for e in transcript["entries"]]
    assert ("speech", BOB, LINE, False) in entries, entries
    assert ("chat", CAROL, PARTICIPANT_CHAT, False) in entries and ("chat", "Anna", PAL_CHAT, True) in entries
    assert ("speech", "Anna", SAY, True) in entries, entries
    assert len(entries) == 4, entries
    assert (final["status"], final["reason"]) == ("left", "stopped")

    far = rec.far_audio
    # 3. The client's 880 Hz, heard at the far end as 880 Hz.
    heard = [s for s in window(far, marks["tone"], marks["after"] + 0.8) if s["rms"] > LOUD and abs(s["f"] - 660) > 15]
    assert len(heard) >= 50, f"only {len(heard)} loud far-end samples"  # >= 1 s of 20 ms samples
    far_hz = median([s["f"] for s in heard])
    assert abs(far_hz - 880) <= 15, far_hz
    # 5. clear: the far end went quiet, soon, and stayed quiet.
    after = window(far, marks["clear"], marks["clear"] + 2.0)
    quiet_at = next(s["t"] for s in after if s["rms"] < QUIET)
    latency = quiet_at - marks["clear"]
    assert all(s["rms"] < QUIET for s in window(far, quiet_at, marks["clear"] + 1.8)), after
    # 4. say: speech energy after the command, in the voice band.
    speech = [s for s in window(far, marks["say"], marks["said"] + 3.0) if s["rms"] > 0.02]
    assert len(speech) >= 25 and speech[0]["t"] >= marks["say"]
    hear_latency = tone_at - min(e["t"] for e in rec.tones_started) if rec.tones_started else float("nan")
    print(f"E2E: 440 Hz heard by the stream client as {heard_hz:.1f} Hz (tone fraction {fraction:.4f}, first "
          f"loud frame {1000 * hear_latency:.0f} ms after the far end added it); client 880 Hz heard at the far "
          f"end as {far_hz:.1f} Hz (n={len(heard)}); clear -> far-end RMS < {QUIET} after {1000 * latency:.0f} ms "
          f"(bound {1000 * CLEAR_BOUND:.0f} ms); say: {len(speech)} loud samples, first "
          f"{1000 * (speech[0]['t'] - marks['say']):.0f} ms after the say frame; transcript {len(entries)} entries")
    assert latency <= CLEAR_BOUND, latency


async def test_a_calendar_join_gets_a_conversation_and_a_transcript(
        pal, server, inbound_smtp, smtp_sink, redis_queue, meet_lookalike: MeetLookalike) -> None:
    _, key = pal
    code = new_code()
    url = meet_lookalike.configure(code, "ended", admit_after=0.5, end_after=7.0, captions=[
        {"at": 0.3, "row": "c1", "speaker": CAROL, "text": "Welcome"},
        {"at": 0.7, "row": "c1", "speaker": CAROL, "text": "Welcome to the planning call."},
    ])
    _, message = meeting(start_in=-timedelta(minutes=10), duration=timedelta(hours=1), pal_address=PAL, link=url)
    message["Authentication-Results"] = "mx.pal-tests.invalid; dkim=pass header.d=acme.com"
    await aiosmtplib.send(message, hostname="127.0.0.1", port=inbound_smtp, sender="alex@acme.com", recipients=[PAL])
    await asyncio.wait_for(run_worker(), timeout=90)  # ingest, reply, and the join (due at once)

    [join] = await Join.select()
    assert (join["status"], join["reason"]) == ("left", "meeting_ended")
    async with httpx.AsyncClient(base_url=server.base_url, headers={"x-api-key": key}) as http:
        view = (await http.get(f"/v2/joins/{join['id']}")).json()
        cid = view["conversation_id"]
        assert cid, view
        conversation = (await http.get(f"/v2/conversations/{cid}")).json()
        transcript = (await http.get(f"/v2/conversations/{cid}/transcript")).json()
    assert (conversation["join_id"], conversation["meeting_url"], conversation["status"]) == (
        join["id"], url, "left")
    assert [(e["kind"], e["speaker"], e["text"], e["self"]) for e in transcript["entries"]] == [
        ("speech", CAROL, "Welcome to the planning call.", False)], transcript
    assert meet_lookalike.record(code).captions_on
