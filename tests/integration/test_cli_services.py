"""CLI commands run by hand find the PostgreSQL and Redis that `make run` chose.

scripts/ensure-services.sh records them in .data/services.env; app/config.py reads that
file when DATABASE_URL / REDIS_URL are not in the environment.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from app.config import parse_env_file
from app.tables import Account
from tests.conftest import TEST_DATABASE_URL, TEST_REDIS_URL

ROOT = Path(__file__).resolve().parents[2]


def env_without_services(**extra: str) -> dict[str, str]:
    """This process's environment minus every way of naming the servers, plus `extra`."""
    drop = {"DATABASE_URL", "REDIS_URL", "PAL_SERVICES_FILE", "PAL_DATA_DIR"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


async def cli(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def test_create_account_uses_the_recorded_services(clean_db, tmp_path: Path) -> None:
    recorded = tmp_path / "services.env"
    recorded.write_text(f"DATABASE_URL='{TEST_DATABASE_URL}'\nREDIS_URL='{TEST_REDIS_URL}'\n")
    name = f"cli-services-{uuid.uuid4().hex[:8]}"

    code, out, err = await cli(env_without_services(PAL_SERVICES_FILE=str(recorded)), "create-account", name)

    assert code == 0, err
    account_id = int(re.search(r"created account (\d+)", out).group(1))
    assert out.strip().splitlines()[-1].startswith("pal_")
    rows = await Account.select(Account.id).where(Account.name == name)
    assert rows == [{"id": account_id}]


async def test_an_unreachable_database_is_one_clear_line(tmp_path: Path) -> None:
    recorded = tmp_path / "services.env"
    # Port 1 on loopback: nothing listens there.
    recorded.write_text("DATABASE_URL=postgresql://postgres:secret@127.0.0.1:1/pal\n")
    env = env_without_services(PAL_SERVICES_FILE=str(recorded))
    for args in (("create-account", "acme"), ("rotate-key", "1"), ("migrate",)):
        code, out, err = await cli(env, *args)
        assert code == 1, (args, err)
        assert "Traceback" not in err and "pal_" not in out
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "cannot reach PostgreSQL at postgresql://postgres:***@127.0.0.1:1/pal" in lines[0]
        assert "make run" in lines[0] and "secret" not in lines[0]


def test_ensure_services_records_the_urls(tmp_path: Path) -> None:
    # Both servers answer, so the script starts nothing; it only records and prints them.
    env = env_without_services(DATABASE_URL=TEST_DATABASE_URL, REDIS_URL=TEST_REDIS_URL,
                               PAL_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run([str(ROOT / "scripts" / "ensure-services.sh")], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"export DATABASE_URL='{TEST_DATABASE_URL}' REDIS_URL='{TEST_REDIS_URL}'"
    written = tmp_path / "data" / "services.env"
    assert parse_env_file(written.read_text()) == {"DATABASE_URL": TEST_DATABASE_URL, "REDIS_URL": TEST_REDIS_URL}
    assert written.stat().st_mode & 0o077 == 0  # DATABASE_URL may hold a password
    assert [p.name for p in written.parent.iterdir()] == ["services.env"]  # no temporary left behind


def test_app_does_not_import_workers() -> None:
    code = "import sys, app.__main__, app.logs, app.config; print(sorted(m for m in sys.modules if m.split('.')[0] == 'workers'))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


async def test_app_worker_becomes_the_arq_worker(redis_queue) -> None:
    env = {**os.environ, "LOG_LEVEL": "INFO"}
    worker = subprocess.Popen([sys.executable, "-m", "app", "worker"], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Same pid: `python -m app worker` exec'd `python -m workers`.
        for _ in range(100):
            cmdline = Path(f"/proc/{worker.pid}/cmdline").read_bytes().split(b"\0")
            if b"workers" in cmdline:
                break
            await asyncio.sleep(0.1)
        assert cmdline[1:3] == [b"-m", b"workers"], cmdline
        line = await asyncio.wait_for(asyncio.to_thread(_first_line_with, worker, "Starting worker"), 60)
        assert " worker INFO " in line  # setup_logging("worker") ran
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def _first_line_with(proc: subprocess.Popen, needle: str) -> str:
    for line in proc.stderr:
        if needle in line:
            return line
    raise AssertionError(f"the worker exited ({proc.poll()}) without logging {needle!r}")
