"""The full pipeline's answer latency and cost: question asked -> the PAL's first words in the meeting.

Runs on 127.0.0.1: the Meet look-alike (served by this process), the real bot in Chromium
(`run_meet_bot`), the real relay, and the participant loop (workers/participant.py) wired as
`workers/joins.run_join` wires them, against the OpenAI-compatible stub (tests/llm_stub.py)
answering its first token after `--first-token` s (default 0.2) and then a token every 20 ms.

Captions script `--questions` lines "Anna, question N?" (a partial, then the full line 0.4 s
later), `--gap` s apart. For each: from the moment the line became final (the caption reader's
final event, as the participant receives it) to the first far-end AnalyserNode sample (every
20 ms, wall clock) louder than RMS 0.02 after it. Goal p50 <= 1.0 s, p99 <= 1.5 s.

Then CPU per bot (Chromium tree + this process, which is the bot's Python side and the
participant) over the whole run, which answers every question.

    .venv/bin/python bench/participant_bench.py [--quick] [--questions 20] [--first-token 0.2]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C  # noqa: E402

LOUD = 0.02
ANSWER = ["Sure", ", ", "the", " answer", " is", " forty", " two", ".", " That", " is", " all", "."]


def caption_script(questions: int, gap: float) -> list[dict[str, Any]]:
    script = []
    for i in range(questions):
        at = 4.0 + gap * i
        script.append({"at": at, "row": f"q{i}", "speaker": "Bob", "text": f"Anna, question {i}"})
        script.append({"at": at + 0.4, "row": f"q{i}", "speaker": "Bob", "text": f"Anna, question {i}, what is it?"})
    return script


async def amain(args: argparse.Namespace) -> None:
    from datetime import datetime, timezone

    from app import db
    from app.media import ensure_face_media
    from app.services import pals as pal_service
    from app.services.accounts import create_account
    from app.services.conversations import create_conversation
    from app.services.faces import seed_stock_faces
    from app.services.joins import set_status
    from app.services.media_relay import WorkerRelay
    from app.services.pipeline import Endpoint, PipelineSetup
    from app.tables import Conversation
    from tests.llm_stub import LlmStub
    from tests.meet_lookalike import MeetLookalike
    from workers.joins import command_sink, media_channels
    from workers.participant import Participant

    await db.open_pool(min_size=1, max_size=4)
    await seed_stock_faces()
    account, _ = await create_account("bench-participant")
    pal = await pal_service.create_pal(account.id, {"pal_name": "Anna", "default_face_id": "r90bbd427f71"})
    view = await create_conversation(account.id, {"pal_id": pal["pal_id"], "meeting_url": MeetLookalike.url(C.meet_code())},
                                     now=datetime.now(timezone.utc))
    row = await Conversation.select(Conversation.id).where(Conversation.conversation_id == view["conversation_id"]).first()
    media = ensure_face_media("r90bbd427f71", "Anna", "en-us", Path(tempfile.gettempdir()) / "pal-face-media-bench")
    stub = LlmStub(api_key="sk-bench", chunks=ANSWER, first_token_delay=args.first_token, chunk_delay=0.02)
    await stub.start()
    server = MeetLookalike().start()
    print(f"machine: {C.machine()}\ndate: {C.today()}\n{args.questions} questions, {args.gap:.0f} s apart; stub first "
          f"token after {1000 * args.first_token:.0f} ms, then a token every 20 ms\n", flush=True)
    C.wait_quiet(args.wait_quiet, max_cores=0.5)
    relay = WorkerRelay(view["conversation_id"], row["id"], "Anna")
    relay.start()
    setup = PipelineSetup(mode="full", pal_name="Anna", system_prompt="You are Anna. Answer questions briefly.",
                          llm=Endpoint(base_url=stub.base_url, model="stub", api_key=stub.api_key, timeout=5, trusted=True))
    commands: asyncio.Queue[Any] = asyncio.Queue(1000)

    async def record(kind: str, payload: dict[str, Any]) -> None:
        print(f"event {kind}: {payload}", flush=True)

    participant = Participant(setup, commands, conversation_pk=row["id"], conversation_id=view["conversation_id"],
                              record_event=record)
    finals: list[float] = []
    hear = participant.on_caption

    def on_caption(caption: Any) -> None:
        if caption.final and caption.speaker == "Bob":
            finals.append(time.time())
        hear(caption)

    participant.on_caption = on_caption  # type: ignore[method-assign]
    said_at: list[float] = []  # the first chunk of each sentence handed to the page
    queued_at: list[float] = []  # each Say put on the bot's queue
    note_self = participant.on_self_speech

    def on_self_speech(text: str, at: Any) -> None:
        said_at.append(time.time())
        note_self(text, at)

    participant.on_self_speech = on_self_speech  # type: ignore[method-assign]
    command = participant._command

    def spy_command(cmd: Any) -> bool:
        if type(cmd).__name__ == "Say":
            queued_at.append(time.time())
        return command(cmd)

    participant._command = spy_command  # type: ignore[method-assign]
    channels = media_channels(relay, participant, commands=commands)
    pump = asyncio.create_task(relay.pump_commands(command_sink(channels, view["conversation_id"])))
    loop_task = asyncio.create_task(participant.run())
    meeting = C.meet_code()
    url = server.configure(meeting, "stay", admit_after=0.5, tones=[], captions=caption_script(args.questions, args.gap))
    rec = server.record(meeting)
    bot = C.MeetBot(server, media, channels, name="Anna", on_in_call=participant.admitted, alone_grace=3600,
                    mic_off_after=args.mic_off_after)
    latencies: list[float] = []
    stages: list[tuple[float, float, float]] = []  # final -> queued, queued -> fed, fed -> heard
    try:
        await bot.start(url)
        pids = bot.tree()
        ticks0, self0, w0 = C.cpu_ticks(pids), time.process_time(), time.monotonic()
        end = time.time() + 4.0 + args.gap * args.questions + 10
        while time.time() < end and len(finals) < args.questions:
            await asyncio.sleep(0.5)
        await asyncio.sleep(args.gap)
        wall = time.monotonic() - w0
        chromium = (C.cpu_ticks(pids) - ticks0) / C.CLK_TCK / wall
        python = (time.process_time() - self0) / wall
        for at in finals:
            first = next((s["t"] for s in rec.far_audio if s["t"] > at and s["rms"] > LOUD), None)
            if first is not None and first - at < args.gap:
                latencies.append(first - at)
                q = next((t for t in queued_at if t > at), None)
                f = next((t for t in said_at if t > at), None)
                if q is not None and f is not None and q <= f <= first:
                    stages.append((q - at, f - q, first - f))
    finally:
        with contextlib.suppress(Exception):
            await bot.close()
        loop_task.cancel()
        pump.cancel()
        await relay.close()
        await stub.close()
        server.stop()
        with contextlib.suppress(Exception):
            await set_status(view["join_id"], "left", "stopped", now=datetime.now(timezone.utc))
        await db.close_pool()
    ms = sorted(1000 * v for v in latencies)
    print(f"question final -> first far-end audio, ms: {[round(v) for v in ms]}")
    print(f"participant: {participant.stats}")
    if stages:
        names = ("final → Say queued (LLM)", "Say → first chunk to the page (voice, mic)",
                 "page → far end loud (WebRTC, meter)")
        for i, name in enumerate(names):
            print(f"  {name}: median {1000 * statistics.median(s[i] for s in stages):.0f} ms")
    p50, p99 = (C.percentile(ms, 50), C.percentile(ms, 99)) if ms else (float("nan"), float("nan"))
    print(C.md_table(["measure", "n", "p50", "p99", "max", "goal"], [
        ["question final → first audio (ms)", len(ms), f"{p50:.0f}", f"{p99:.0f}",
         f"{max(ms):.0f}" if ms else "—", "p50 ≤ 1000, p99 ≤ 1500"],
    ]))
    print(f"\nCPU per bot over the run (answering every {args.gap:.0f} s): Chromium tree {chromium:.3f} cores, "
          f"bot Python + participant {python:.3f} cores; {len(finals)}/{args.questions} questions seen, "
          f"median {statistics.median(ms) if ms else float('nan'):.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="6 questions")
    ap.add_argument("--questions", type=int, default=None, help="questions asked (default 20, quick 6)")
    ap.add_argument("--gap", type=float, default=8.0, help="seconds between questions")
    ap.add_argument("--first-token", type=float, default=0.2, help="the stub's time to first token, s")
    ap.add_argument("--mic-off-after", type=float, default=float("inf"),
                    help="s of silence before the PAL mutes (run_join: never, for a full PAL)")
    ap.add_argument("--wait-quiet", type=float, default=20, help="max seconds to wait for an idle machine")
    args = ap.parse_args()
    args.questions = args.questions or (6 if args.quick else 20)
    C.run_bench(amain, args)


if __name__ == "__main__":
    main()
