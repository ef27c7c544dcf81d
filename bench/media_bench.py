"""Media bridge latency and cost: the real bot in the Meet look-alike, the real relay, API and stream.

Runs on 127.0.0.1: `python -m app serve` (the API, a subprocess), the Meet look-alike (served by
this process) and the bot, `run_meet_bot(..., channels=media_channels(relay))` with a
`WorkerRelay` and its command pump, wired exactly as `workers/joins.run_join` wires them (the
bot runs in this process instead of an arq worker). A websocket client on
`GET /v2/conversations/{id}/stream` plays the agent. Wall clock everywhere: the page's
`Date.now()`, the look-alike's report times and this process's `time.time()` read the same
system clock.

Measured in one call (bridge on):

    participant → client   the far end's 440 Hz participant track is muted (track.enabled =
                           false) and unmuted through CDP; from the unmute (page Date.now()) to
                           the first stream binary frame whose 440 Hz Goertzel power is above 1 %
                           of a fully-on frame's (amplitude > 10 %) arriving at the client
    client → meeting       the client streams PCM in real time (20 ms frames, silence with
                           300 ms 880 Hz bursts); from sending a burst's first frame to the far
                           end's AnalyserNode (every 20 ms, record.far_audio) RMS > 0.05
    barge-in               the client streams 660 Hz in real time, waits until it is heard, stops
                           and sends {"type":"clear"}; from the send to far-end RMS < 0.01
    caption → transcript   scripted caption rows (a partial, the full line 0.4 s later); from the
                           line's last change (captions_on report time + `at`) to the stream's
                           final transcript event

Then CPU and PSS per bot (the bot's own Chromium process tree from its pid, plus this process's
CPU, which is the bot's Python side) over `--hold` s in a call with a 440 Hz participant and
captions scripted: bridge off (`channels=None`), on and listening (relay publishing, no stream
client; the injected mic is off while silent) and on and speaking (SpeakAudio at real-time pace,
mic on). Without the bridge the mic sends the face's wav all the time, so "speaking" is the
like-for-like comparison for the encoder.

    .venv/bin/python bench/media_bench.py [--quick] [--rounds 30] [--hold 20] [--pairs 2]

Uses the bench database (an account, a PAL, a conversation) and Redis db (its pub/sub only).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

LOUD_FAR, QUIET_FAR = 0.05, 0.01  # far-end RMS, full scale 1.0 (a 0.5-amplitude sine is ~0.35)
GOALS = {"participant → client": 150, "client → meeting": 150, "barge-in (clear → quiet)": 250,
         "caption settle → final event": 1500}
FAR_TRACKS_JS = """(() => {
  const f = document.querySelector('#media iframe'); const far = f && f.contentWindow && f.contentWindow.farEnd;
  if (!far) return null;
  const tracks = far.pc.getSenders().map((s) => s.track).filter((t) => t && t.kind === 'audio');
  tracks.forEach((t) => { t.enabled = %s; });
  return {t: Date.now() / 1000, n: tracks.length};
})()"""


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def caption_script(lines: int) -> tuple[list[dict[str, Any]], list[float]]:
    """Rows r0..: a partial, then the full line 0.4 s later; 2.5 s apart. Returns (script, settle `at`s)."""
    script, settles = [], []
    for i in range(lines):
        at = 1.0 + 2.5 * i
        script.append({"at": at, "row": f"r{i}", "speaker": "Alex", "text": f"Line {i} is starting"})
        script.append({"at": at + 0.4, "row": f"r{i}", "speaker": "Alex",
                       "text": f"Line {i} is starting and now it is complete."})
        settles.append(at + 0.4)
    return script, settles


async def wait_until(test, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.time() + timeout
    while not test():
        if time.time() > end:
            raise SystemExit(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class StreamClient:
    """The agent: a websocket on the stream; every message kept with its arrival time."""

    def __init__(self, url: str, key: str) -> None:
        self.url, self.key = url, key
        self.frames: list[tuple[float, bytes]] = []
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.ws: Any = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, additional_headers={"x-api-key": self.key}, max_queue=None)
        first = json.loads(await asyncio.wait_for(self.ws.recv(), 10))
        assert first["type"] == "started", first
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for msg in self.ws:
                now = time.time()
                if isinstance(msg, bytes):
                    self.frames.append((now, msg))
                else:
                    self.events.append((now, json.loads(msg)))

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
        if self.ws is not None:
            await self.ws.close()


def tone_power(pcm: bytes, freq: float) -> float:
    from workers.meet_bot.pcm import SAMPLE_RATE, goertzel_power, to_samples

    return goertzel_power(to_samples(pcm), SAMPLE_RATE, freq)


# --- the latency call ------------------------------------------------------------------------

async def participant_to_client(bot: C.MeetBot, client: StreamClient, rounds: int) -> tuple[list[float], dict[str, Any]]:
    """Mute/unmute the far end's 440 Hz track; unmute → first loud 440 Hz frame at the client."""
    ons: list[float] = []
    offs: list[float] = []
    for _ in range(rounds):
        off = await bot.session.evaluate(FAR_TRACKS_JS % "false")
        offs.append(off["t"])
        await asyncio.sleep(random.uniform(0.5, 0.7))
        on = await bot.session.evaluate(FAR_TRACKS_JS % "true")
        ons.append(on["t"])
        await asyncio.sleep(random.uniform(0.4, 0.5))
    await asyncio.sleep(0.5)
    power = [(t, tone_power(pcm, 440)) for t, pcm in client.frames if t >= offs[0] - 1]
    full = statistics.median(sorted(p for _, p in power)[-max(len(power) // 4, 1):])  # a fully-on frame
    latencies, quiet_offs = [], 0
    for i, t_on in enumerate(ons):
        nxt = offs[i + 1] if i + 1 < len(offs) else t_on + 1.0
        loud = [t for t, p in power if t_on <= t < nxt and p > 0.01 * full]
        if loud:
            latencies.append(1000 * (loud[0] - t_on))
        # Did the mute silence the client's audio before this unmute? (the 150 ms before it)
        quiet_offs += all(p < 0.01 * full for t, p in power if t_on - 0.15 <= t < t_on)
    return latencies, {"rounds": rounds, "detected": len(latencies), "quiet before unmute": quiet_offs}


async def client_to_meeting(client: StreamClient, rec, rounds: int) -> tuple[list[float], dict[str, Any]]:  # type: ignore[no-untyped-def]
    """Real-time PCM from the client (20 ms frames): silence with 300 ms 880 Hz bursts."""
    from workers.meet_bot.pcm import from_samples, sine, split_pcm

    silence = b"\0\0" * 320
    burst = split_pcm(from_samples(sine(880, 0.3, amplitude=0.5)), 20)
    plan: list[tuple[bytes, bool]] = [(silence, False)] * 75  # 1.5 s warm-up: the mic comes on
    for _ in range(rounds):
        plan += [(silence, False)] * random.randint(35, 55) + [(f, i == 0) for i, f in enumerate(burst)]
    plan += [(silence, False)] * 25
    sent: list[float] = []
    t0 = time.monotonic() + 0.05
    for k, (frame, onset) in enumerate(plan):
        delay = t0 + 0.02 * k - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if onset:
            sent.append(time.time())
        await client.ws.send(frame)
    await asyncio.sleep(0.7)  # far_audio comes in 200 ms batches
    far = list(rec.far_audio)
    latencies, quiet_before = [], 0
    for t in sent:
        heard = [s["t"] for s in far if t <= s["t"] < t + 0.7 and s["rms"] > LOUD_FAR]
        if heard:
            latencies.append(1000 * (heard[0] - t))
        quiet_before += all(s["rms"] < QUIET_FAR for s in far if t - 0.2 <= s["t"] < t)
    return latencies, {"bursts": rounds, "detected": len(latencies), "quiet before burst": quiet_before}


async def barge_in(client: StreamClient, rec, rounds: int) -> tuple[list[float], dict[str, Any]]:  # type: ignore[no-untyped-def]
    from workers.meet_bot.pcm import from_samples, sine, split_pcm

    tone = split_pcm(from_samples(sine(660, 4.0, amplitude=0.5)), 100)
    stops: list[float] = []
    stayed = 0
    for _ in range(rounds):
        start = time.time()

        async def stream_tone() -> None:  # in real time: live voice that falls behind is dropped
            for i, frame in enumerate(tone):
                await asyncio.sleep(max(0.0, start + 0.1 * i - 0.1 - time.time()))
                await client.ws.send(frame)

        sender = asyncio.create_task(stream_tone())
        try:
            await wait_until(lambda: sum(1 for s in rec.far_audio if s["t"] > start and s["rms"] > LOUD_FAR) >= 25,
                             6, "the 660 Hz tone at the far end")
        except SystemExit:
            recent = [round(s["rms"], 3) for s in rec.far_audio if s["t"] > start][-20:]
            mic = [(round(e["t"] - start, 2), e.get("on")) for e in rec.events if e["event"] in ("toggle", "mic_device")]
            print(f"barge-in: the tone was not heard within 6 s (far-end rms {recent}, mic {mic[-6:]}); "
                  "round skipped", flush=True)
            sender.cancel()
            await client.ws.send(json.dumps({"type": "clear"}))
            continue
        sender.cancel()
        t_clear = time.time()
        await client.ws.send(json.dumps({"type": "clear"}))
        await asyncio.sleep(1.2)  # < mic_off_after (2 s): the mic stays on for the next round
        after = [s for s in rec.far_audio if s["t"] >= t_clear]
        quiet = next((s["t"] for s in after if s["rms"] < QUIET_FAR), None)
        if quiet is not None:
            stops.append(1000 * (quiet - t_clear))
            stayed += all(s["rms"] < QUIET_FAR for s in after if quiet <= s["t"] < t_clear + 1.0)
    return stops, {"rounds": rounds, "quiet": len(stops), "stayed quiet to +1 s": stayed}


def caption_latencies(client: StreamClient, rec, settles: list[float]) -> tuple[list[float], dict[str, Any]]:  # type: ignore[no-untyped-def]
    on = next((e["t"] for e in rec.events if e["event"] == "captions_on"), None)
    if on is None:
        return [], {"lines": len(settles), "final": 0}
    finals: dict[int, float] = {}
    last_partial: dict[int, float] = {}
    for t, ev in client.events:
        if ev.get("type") != "transcript" or ev.get("self"):
            continue
        words = str(ev.get("text", "")).split()
        if len(words) >= 2 and words[0] == "Line" and words[1].isdigit():
            i = int(words[1])
            if ev.get("final"):
                finals.setdefault(i, t)
            elif ev["text"].endswith("complete."):
                last_partial[i] = t
    lat = [1000 * (finals[i] - (on + at)) for i, at in enumerate(settles) if i in finals]
    since_partial = [1000 * (finals[i] - last_partial[i]) for i in finals if i in last_partial]
    return lat, {"lines": len(settles), "final": len(finals),
                 "final − full-line partial at client, median ms":
                     round(statistics.median(since_partial)) if since_partial else None}


# --- CPU / PSS, bridge off vs on ---------------------------------------------------------------

async def speak_forever(channels) -> None:  # type: ignore[no-untyped-def]
    """The PAL talks all the time: 100 ms frames of a 300 Hz tone at real-time pace (keeps the mic on)."""
    from workers.meet_bot.channels import SpeakAudio
    from workers.meet_bot.pcm import from_samples, sine, split_pcm

    frames = split_pcm(from_samples(sine(300, 1.0, amplitude=0.3)), 100)
    t0 = time.monotonic()
    k = 0
    while True:
        await asyncio.sleep(max(t0 + 0.1 * k - time.monotonic(), 0))
        with contextlib.suppress(asyncio.QueueFull):
            channels.commands.put_nowait(SpeakAudio(frames[k % len(frames)]))
        k += 1


async def resource_run(server, media, conv: dict[str, Any], mode: str, hold: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from app.services.media_relay import WorkerRelay
    from workers.joins import command_sink, media_channels
    from workers.meet_bot import procs

    relay = pump = talk = None
    channels = None
    if mode != "off":
        relay = WorkerRelay(conv["conversation_id"], conv["pk"], "Bench PAL")
        relay.start()
        channels = media_channels(relay)
        pump = asyncio.create_task(relay.pump_commands(command_sink(channels, conv["conversation_id"])))
    script, _ = caption_script(int(hold / 2.5) + 4)
    url = server.configure(C.meet_code(), "stay", admit_after=0.5, tones=[{"freq": 440, "at": 0.5, "gain": 0.3}],
                           captions=script)
    bot = C.MeetBot(server, media, channels)
    try:
        await bot.start(url)
        if mode == "on, speaking":
            talk = asyncio.create_task(speak_forever(channels))
        await asyncio.sleep(4)  # media, captions and the mic policy settle
        tree = bot.tree()
        ticks0, py0, busy0, t0 = C.cpu_ticks(tree), time.process_time(), C.system_busy_seconds(), time.monotonic()
        pss: list[int] = []
        end = time.monotonic() + hold
        while time.monotonic() < end:
            pss.append(procs.memory_kib(bot.tree())[0])
            await asyncio.sleep(1.0)
        tree = bot.tree()
        wall = time.monotonic() - t0
        chromium = (C.cpu_ticks(tree) - ticks0) / C.CLK_TCK / wall
        python = (time.process_time() - py0) / wall
        other = max((C.system_busy_seconds() - busy0) / wall - chromium - python, 0.0)
        frames = relay.stats.published if relay else 0
    finally:
        if talk:
            talk.cancel()
        await bot.close()
        if pump:
            pump.cancel()
        if relay:
            await relay.close()
    return {"chromium_cores": chromium, "python_cores": python, "pss_mib": statistics.median(pss) / 1024,
            "pss_max_mib": max(pss) / 1024, "procs": len(tree), "other_cores": other, "published": frames}


# --- main -------------------------------------------------------------------------------------

def stats_row(name: str, values: list[float], extra: dict[str, Any]) -> list[object]:
    goal = GOALS[name]
    if not values:
        return [name, 0, "—", "—", "—", f"≤ {goal}", "no data", json.dumps(extra, ensure_ascii=False)]
    p50, p99 = C.percentile(values, 50), C.percentile(values, 99)
    return [name, len(values), round(p50), round(p99), round(max(values)), f"≤ {goal}",
            "met" if p99 <= goal else ("p50 only" if p50 <= goal else "missed"),
            ", ".join(f"{k}: {v}" for k, v in extra.items())]


async def amain(args: argparse.Namespace) -> None:
    import httpx

    from app import db
    from app.media import ensure_face_media
    from app.services import pals as pal_service
    from app.services.accounts import create_account
    from app.services.conversations import create_conversation
    from app.services.faces import seed_stock_faces
    from app.services.joins import set_status
    from app.services.media_relay import WorkerRelay
    from app.tables import Conversation
    from datetime import datetime, timezone
    from tests.meet_lookalike import MeetLookalike
    from workers.joins import command_sink, media_channels

    await db.open_pool(min_size=1, max_size=4)
    await seed_stock_faces()
    account, key = await create_account("bench-media")
    pal = await pal_service.create_pal(account.id, {"pal_name": "Bench", "default_face_id": "r90bbd427f71"})
    view = await create_conversation(account.id, {"pal_id": pal["pal_id"], "meeting_url": MeetLookalike.url(C.meet_code())},
                                     now=datetime.now(timezone.utc))
    row = await Conversation.select(Conversation.id).where(
        Conversation.conversation_id == view["conversation_id"]).first()
    conv = {"conversation_id": view["conversation_id"], "pk": row["id"]}
    # No worker runs here: mark the join in the call (as the worker would) so the stream takes voice frames.
    for status in ("dispatching", "joining", "in_call"):
        await set_status(view["join_id"], status, now=datetime.now(timezone.utc))
    media = ensure_face_media("r90bbd427f71", "Bench", "en-us", Path(tempfile.gettempdir()) / "pal-face-media-bench")
    api_port = C.free_port()
    api = C.start("api", [C.PY, "-m", "app", "serve"], C.bench_env(API_PORT=str(api_port), LOG_LEVEL="WARNING"))
    C.wait_port(api_port, api)
    async with httpx.AsyncClient() as http:
        for _ in range(100):  # noqa: B007
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(f"http://{C.HOST}:{api_port}/healthz")).status_code == 200:
                    break
            await asyncio.sleep(0.1)
    server = MeetLookalike().start()
    print(f"machine: {C.machine()}\ndate: {C.today()}\nload average at start: {load()}\n"
          f"mode: {'quick' if args.quick else 'full'}; {args.rounds} rounds per latency, "
          f"{args.barge} barge-ins, {args.lines} caption lines, {args.pairs} run(s) of {args.hold:.0f} s per mode\n",
          flush=True)
    if not args.skip_latency:
        C.wait_quiet(args.wait_quiet, max_cores=0.5)
    rows: list[list[object]] = []
    started = time.monotonic()
    try:
        if not args.skip_latency:
            relay = WorkerRelay(conv["conversation_id"], conv["pk"], "Bench PAL")
            relay.start()
            channels = media_channels(relay)
            pump = asyncio.create_task(relay.pump_commands(command_sink(channels, conv["conversation_id"])))
            client = StreamClient(f"ws://{C.HOST}:{api_port}/v2/conversations/{conv['conversation_id']}/stream", key)
            await client.open()
            script, settles = caption_script(args.lines)
            meeting = C.meet_code()
            url = server.configure(meeting, "stay", admit_after=0.5,
                                   tones=[{"freq": 440, "at": 0.5, "gain": 0.3}], captions=script)
            rec = server.record(meeting)
            bot = C.MeetBot(server, media, channels)
            busy0, w0 = C.system_busy_seconds(), time.monotonic()
            try:
                await bot.start(url)
                await wait_until(lambda: rec.tones_started and rec.far_audio, 20, "the far end's tone")
                await wait_until(lambda: any(tone_power(p, 440) > 1e9 for _, p in client.frames[-10:]), 20,
                                 "440 Hz at the stream client")
                p2c, p2c_x = await participant_to_client(bot, client, args.rounds)
                print(f"participant → client ms: {[round(v) for v in p2c]} {p2c_x}", flush=True)
                c2m, c2m_x = await client_to_meeting(client, rec, args.rounds)
                print(f"client → meeting ms: {[round(v) for v in c2m]} {c2m_x}", flush=True)
                bi, bi_x = await barge_in(client, rec, args.barge)
                print(f"barge-in ms: {[round(v) for v in bi]} {bi_x}", flush=True)
                on = next((e["t"] for e in rec.events if e["event"] == "captions_on"), time.time())
                await wait_until(lambda: time.time() > on + settles[-1] + 2.5, 90, "the last caption line")
                cap, cap_x = caption_latencies(client, rec, settles)
            finally:
                with contextlib.suppress(Exception):
                    await bot.close()
                pump.cancel()
                await client.close()
                await relay.close()
            busy = (C.system_busy_seconds() - busy0) / (time.monotonic() - w0)
            rows += [stats_row("participant → client", p2c, p2c_x), stats_row("client → meeting", c2m, c2m_x),
                     stats_row("barge-in (clear → quiet)", bi, bi_x),
                     stats_row("caption settle → final event", cap, cap_x)]
            print(C.md_table(["path", "n", "p50 ms", "p99 ms", "max ms", "goal ms", "goal", "notes"], rows))
            print(f"\nmachine busy during the call: {busy:.2f} cores of {os.cpu_count()} (bot, API, Redis, "
                  f"this process and anything else); relay stats: {relay.stats}\n", flush=True)

        modes = ("off", "on", "on, speaking")
        runs: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
        for _ in range(args.pairs):
            for mode in modes:
                C.wait_quiet(args.wait_quiet, max_cores=0.5)
                runs[mode].append(await resource_run(server, media, conv, mode, args.hold))
                r = runs[mode][-1]
                print(f"bridge {mode}: Chromium {r['chromium_cores']:.3f} cores, "
                      f"bot Python {r['python_cores']:.3f}, PSS {r['pss_mib']:.0f} MiB (max {r['pss_max_mib']:.0f}), "
                      f"{r['procs']} processes, other {r['other_cores']:.2f} cores, frames published "
                      f"{r['published']}", flush=True)
        med = {b: {k: statistics.median(r[k] for r in runs[b]) for k in runs[b][0]} for b in runs}
        res_rows = []
        for label, k in [("Chromium tree CPU (cores)", "chromium_cores"), ("bot Python CPU (cores)", "python_cores"),
                         ("Chromium tree PSS (MiB, median)", "pss_mib"), ("Chromium tree PSS (MiB, max)", "pss_max_mib")]:
            vals = [med[m][k] for m in modes]
            res_rows.append([label, *(f"{v:.3f}" if "CPU" in label else f"{v:.0f}" for v in vals),
                             *(f"{v / vals[0]:.2f}×" if vals[0] else "—" for v in vals[1:])])
        tot = [med[m]["chromium_cores"] + med[m]["python_cores"] for m in modes]
        res_rows.append(["CPU, Chromium + Python (cores)", *(f"{v:.3f}" for v in tot),
                         *(f"{v / tot[0]:.2f}×" if tot[0] else "—" for v in tot[1:])])
        print()
        print(C.md_table(["per bot, in a call (median of runs)", "bridge off", "bridge on (listening)",
                          "bridge on (speaking)", "on / off (goal ≤ 1.3×)", "speaking / off"], res_rows))
        print("\nother CPU (not the bot, not this process) during the holds: "
              + ", ".join(f"{m} {med[m]['other_cores']:.2f}" for m in modes)
              + f" cores; load average now {load()}; total {time.monotonic() - started:.0f} s")
    finally:
        server.stop()
        with contextlib.suppress(Exception):
            await set_status(view["join_id"], "left", "stopped", now=datetime.now(timezone.utc))
        await db.close_pool()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="10 rounds, 3 barge-ins, 8 lines, one 10 s run per mode")
    ap.add_argument("--rounds", type=int, default=None, help="onsets per audio direction (default 30, quick 10)")
    ap.add_argument("--barge", type=int, default=None, help="barge-ins (default 8, quick 3)")
    ap.add_argument("--lines", type=int, default=None, help="caption lines (default 24, quick 8)")
    ap.add_argument("--hold", type=float, default=None, help="seconds sampled per resource run (default 20, quick 10)")
    ap.add_argument("--pairs", type=int, default=None, help="runs per mode (off, on, on+speaking; default 2, quick 1)")
    ap.add_argument("--wait-quiet", type=float, default=20, help="max seconds to wait for an idle machine")
    ap.add_argument("--skip-latency", action="store_true", help="only the CPU/PSS comparison")
    args = ap.parse_args()
    q = args.quick
    args.rounds = args.rounds or (10 if q else 30)
    args.barge = args.barge or (3 if q else 8)
    args.lines = args.lines or (8 if q else 24)
    args.hold = args.hold or (10.0 if q else 20.0)
    args.pairs = args.pairs or (1 if q else 2)
    C.run_bench(amain, args)


if __name__ == "__main__":
    main()
