"""A worker restart (SIGTERM) or death (SIGKILL) mid-meeting leaves no ghost bot and starts exactly one new one."""

from __future__ import annotations

import asyncio
import os
import random
import shutil
import signal
import string
import subprocess
import sys
from datetime import datetime, timezone

import pytest

from app.config import reset_settings
from app.services import pals as pal_service
from app.services.accounts import create_account
from app.services.conversations import create_conversation, end_conversation
from app.services.bot_runs import REDISPATCHED
from app.tables import Join, JoinStatusChange
from workers.meet_bot.procs import alive, descendants
from workers.settings import orphaned_bot_pids

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium not installed"),
    pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed"),
]


def start_worker(env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", "worker"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def bot_browsers(worker: subprocess.Popen) -> list[int]:
    """The worker's Chromium main processes (its direct children carrying a bot profile)."""
    found = []
    for pid in descendants(worker.pid):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"pal-meet-bot-" in cmd and b"--type=" not in cmd:
            found.append(pid)
    return found


async def wait_for_status(join_pk: int, status: str, seconds: float = 60, *, version: int | None = None) -> dict:
    for _ in range(int(seconds * 10)):
        row = await Join.select().where(Join.id == join_pk).first()
        if row["status"] == status and version in (None, row["plan_version"]):
            return row
        await asyncio.sleep(0.1)
    raise AssertionError(f"join {join_pk} stayed {row['status']} (v{row['plan_version']}), never {status}")


def worker_env(lookalike_browser_args: str, tmp_path) -> dict[str, str]:
    return {**os.environ, "BOT_BROWSER_ARGS": lookalike_browser_args, "MEDIA_DIR": str(tmp_path / "media"),
            "LOG_LEVEL": "WARNING"}


async def start_conversation(meet_lookalike, code_suffix: str) -> tuple[object, dict, str, str]:
    code = "".join(random.choice(string.ascii_lowercase) for _ in range(3)) + code_suffix
    url = meet_lookalike.configure(code, "stay", admit_after=0.3)
    account, _ = await create_account("acme")
    pal = await pal_service.create_pal(account.id, {"pal_name": "Anna", "default_face_id": "r90bbd427f71"})
    conversation = await create_conversation(account.id, {"pal_id": pal["pal_id"], "meeting_url": url},
                                             now=datetime.now(timezone.utc))
    return account, conversation, code, url


async def test_sigterm_mid_call_hands_the_join_to_the_next_worker(
        clean_db, redis_queue, meet_lookalike, lookalike_browser_args, tmp_path, monkeypatch):
    monkeypatch.setenv("BOT_BROWSER_ARGS", lookalike_browser_args)
    reset_settings()
    account, conversation, code, _ = await start_conversation(meet_lookalike, "-rest-art")
    join_pk = conversation["join_id"]
    env = worker_env(lookalike_browser_args, tmp_path)

    first = start_worker(env)
    try:
        await wait_for_status(join_pk, "in_call")
        assert len(bot_browsers(first)) == 1
        first.send_signal(signal.SIGTERM)
        await asyncio.to_thread(first.wait, 30)
    finally:
        if first.poll() is None:
            first.kill()
    assert orphaned_bot_pids() == []  # no ghost Chromium outlived its worker
    handed_back = await Join.select().where(Join.id == join_pk).first()
    assert (handed_back["status"], handed_back["plan_version"]) == ("scheduled", 2)

    second = start_worker(env)
    try:
        await wait_for_status(join_pk, "in_call")
        await asyncio.sleep(1.5)  # a second bot, if any, would have appeared by now
        assert len(bot_browsers(second)) == 1
        assert meet_lookalike.record(code).page_loads == 2
        await end_conversation(account.id, conversation["conversation_id"], now=datetime.now(timezone.utc))
        final = await wait_for_status(join_pk, "left")
        assert final["reason"] == "stopped"
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 30)
    statuses = [r["status"] for r in await JoinStatusChange.select().where(
        JoinStatusChange.join == join_pk).order_by(JoinStatusChange.id)]
    assert statuses.count("in_call") == 2 and statuses[-1] == "left"


async def test_sigkill_mid_call_the_pal_is_back_in_the_call_with_one_bot(
        clean_db, redis_queue, meet_lookalike, lookalike_browser_args, tmp_path, monkeypatch):
    """kill -9 leaves no hand-back: the bot's lease expires, recovery re-dispatches the join,
    and the restarted worker (whose startup kills the orphaned Chromium) rejoins, once."""
    monkeypatch.setenv("BOT_BROWSER_ARGS", lookalike_browser_args)
    reset_settings()
    account, conversation, code, _ = await start_conversation(meet_lookalike, "-kill-nin")
    join_pk = conversation["join_id"]
    env = worker_env(lookalike_browser_args, tmp_path)

    first = start_worker(env)
    try:
        await wait_for_status(join_pk, "in_call", version=1)
        [old_browser] = bot_browsers(first)
    finally:
        first.kill()  # SIGKILL: no shutdown code runs, the lease is left to expire
        await asyncio.to_thread(first.wait, 30)
    assert old_browser in orphaned_bot_pids()  # the dead worker's bot is still in the meeting

    # What `python -m app run` does: start a new worker at once; its startup kills the orphans.
    second = start_worker(env)
    try:
        back = await wait_for_status(join_pk, "in_call", version=2)
        assert back["reason"] is None
        await asyncio.sleep(1.5)  # a second bot, if any, would have appeared by now
        assert not alive(old_browser) and orphaned_bot_pids() == []
        assert len(bot_browsers(second)) == 1  # exactly one bot in the meeting
        record = meet_lookalike.record(code)
        assert record.page_loads == 2 and record.event_names().count("admitted") == 2
        assert (await Join.select().where(Join.id == join_pk).first())["plan_version"] == 2
        await end_conversation(account.id, conversation["conversation_id"], now=datetime.now(timezone.utc))
        final = await wait_for_status(join_pk, "left")
        assert final["reason"] == "stopped"
    finally:
        second.send_signal(signal.SIGTERM)
        await asyncio.to_thread(second.wait, 30)
    history = [(r["status"], r["reason"]) for r in await JoinStatusChange.select().where(
        JoinStatusChange.join == join_pk).order_by(JoinStatusChange.id)]
    assert [s for s, _ in history].count("in_call") == 2 and history[-1] == ("left", "stopped")
    assert ("scheduled", REDISPATCHED) in history
