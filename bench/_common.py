"""Shared helpers for the bench scripts: loopback-only settings, subprocesses, CPU, machine, tables.

Nothing here imports the app: the scripts set the environment first (Piccolo binds tables to
DATABASE_URL at import time), then import what they need.
"""

from __future__ import annotations

import asyncio
import atexit
from typing import Any
import datetime as _dt
import ipaddress
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
PY = str(ROOT / ".venv" / "bin" / "python") if (ROOT / ".venv" / "bin" / "python").exists() else sys.executable
BENCH_DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/pal_bench")
BENCH_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
HOST = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def loopback_only(url: str) -> str:
    host = urlparse(url).hostname or HOST
    if not ipaddress.ip_address(socket.gethostbyname(host)).is_loopback:
        raise SystemExit(f"bench runs against loopback only, not {host}")
    return url


BENCH_AUTHSERV = "mx.pal-bench.invalid"


def authenticated_by_relay(message, organizer: str) -> None:
    """Mark `message` as the trusted relay does after checking the organizer's DKIM signature."""
    message["Authentication-Results"] = f"{BENCH_AUTHSERV}; dkim=pass header.d={organizer.rsplit('@', 1)[1]}"


def bench_env(**extra: str) -> dict[str, str]:
    """The environment for every process the bench starts: the bench database and Redis db."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=loopback_only(BENCH_DATABASE_URL),
        REDIS_URL=loopback_only(BENCH_REDIS_URL),
        API_HOST=HOST,
        SMTP_HOST=HOST,
        PYTHONUNBUFFERED="1",
        # Invites count only from authenticated organizers (SENDER_AUTH=strict): the benches
        # stand in for the MX relay, whose Authentication-Results the service trusts.
        TRUSTED_AUTHSERV_IDS=BENCH_AUTHSERV,
    )
    env.update({k: str(v) for k, v in extra.items()})
    return env


def use_bench_env() -> None:
    """Point this process at the bench database/Redis (call before importing app.*)."""
    os.environ.update(bench_env())
    sys.path.insert(0, str(ROOT))
    os.chdir(ROOT)  # piccolo_conf.py is found from the working directory


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def migrate() -> None:
    """`python -m app migrate` against the bench database (creates it when missing)."""
    subprocess.run([PY, "-m", "app", "migrate"], cwd=ROOT, env=bench_env(), check=True, timeout=180,
                   stdout=subprocess.DEVNULL)


# --- subprocesses -------------------------------------------------------------------------

_LOG_DIR: Path | None = None
_procs: list[subprocess.Popen] = []


def log_dir() -> Path:
    global _LOG_DIR
    if _LOG_DIR is None:
        _LOG_DIR = Path(tempfile.mkdtemp(prefix="pal-bench-"))
    return _LOG_DIR


def start(name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
    """A subprocess in its own session (so stop() reaches its children), output to a log file."""
    log = open(log_dir() / f"{name}.log", "wb")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    proc.bench_name = name  # type: ignore[attr-defined]
    _procs.append(proc)
    return proc


def stop(proc: subprocess.Popen, timeout: float = 10) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
    if proc in _procs:
        _procs.remove(proc)


def stop_all() -> None:
    for proc in list(reversed(_procs)):
        stop(proc)


def _on_signal(signum: int, _frame: object) -> None:
    stop_all()
    raise SystemExit(128 + signum)


_lock_file = None


def single_instance(*resources: str) -> None:
    """Refuse to run beside another bench using the same database/Redis db (`resources`: their URLs)."""
    import fcntl
    import hashlib

    global _lock_file
    key = hashlib.sha256("\n".join(resources).encode()).hexdigest()[:16]
    _lock_file = open(Path(tempfile.gettempdir()) / f"pal-bench-{key}.lock", "w")
    try:
        fcntl.flock(_lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit(f"another bench is already using {', '.join(resources)}") from None


def install_cleanup() -> None:
    """Stop every started subprocess on exit, Ctrl-C or SIGTERM."""
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, _on_signal)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{proc.bench_name} exited with {proc.returncode}; log: {tail_log(proc)}")  # type: ignore[attr-defined]
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"{proc.bench_name} did not listen on {port} within {timeout}s")  # type: ignore[attr-defined]


def tail_log(proc: subprocess.Popen, lines: int = 30) -> str:
    path = log_dir() / f"{proc.bench_name}.log"  # type: ignore[attr-defined]
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- CPU accounting -----------------------------------------------------------------------

def _stat(pid: int) -> tuple[str, int] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = raw[raw.find("(") + 1: raw.rfind(")")]
    fields = raw[raw.rfind(")") + 2:].split()
    return comm, int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    st = _stat(pid)
    return st[1] / CLK_TCK if st else 0.0


def cpu_by_comm(*names: str, cmdline_has: str | None = None) -> float:
    """CPU seconds used so far by every live process whose name is one of `names` (e.g. postgres),
    optionally only those whose command line contains `cmdline_has` (e.g. a backend's database name)."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _stat(int(entry))
            if st and st[0] in names:
                if cmdline_has is not None:
                    try:
                        if cmdline_has.encode() not in Path(f"/proc/{entry}/cmdline").read_bytes():
                            continue
                    except OSError:
                        continue
                total += st[1]
    return total / CLK_TCK


def system_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy since boot (all cores, from /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


class CpuMeter:
    """CPU seconds used between start() and stop(): per named group, and by everything else.

    `groups` maps a label to a function returning cumulative CPU seconds. "other" is the
    machine's busy time not in any group (other people's processes on a shared machine).
    """

    def __init__(self, groups: dict[str, object]):
        self.groups = groups
        self.before: dict[str, float] = {}
        self.used: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        out = {k: fn() for k, fn in self.groups.items()}  # type: ignore[operator]
        out["bench (this process)"] = time.process_time()
        out["_busy"] = system_busy_seconds()
        out["_wall"] = time.monotonic()
        return out

    def start(self) -> None:
        self.before = self._now()

    def stop(self) -> dict[str, float]:
        after = self._now()
        self.used = {k: max(after[k] - self.before.get(k, 0.0), 0.0) for k in after}
        ours = sum(v for k, v in self.used.items() if not k.startswith("_"))
        self.used["other"] = max(self.used["_busy"] - ours, 0.0)
        return self.used


def children_cpu() -> float:
    """CPU seconds of this process's exited-and-reaped children (e.g. a finished wrk run)."""
    import resource

    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def pid_cpu(pid: int):  # type: ignore[no-untyped-def]
    return lambda: cpu_seconds(pid)


def wait_quiet(max_wait: float, max_cores: float = 0.3, window: float = 2.0) -> float:
    """Wait (at most max_wait s) until the machine is nearly idle; returns the last busy level in cores.

    The bench machine may be shared: other work running during a measurement skews it.
    """
    deadline = time.monotonic() + max_wait
    while True:
        b0, t0 = system_busy_seconds(), time.monotonic()
        time.sleep(window)
        busy = (system_busy_seconds() - b0) / (time.monotonic() - t0)
        if busy <= max_cores or time.monotonic() >= deadline:
            return busy


# --- statistics and output ----------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(math.ceil(p / 100 * len(ordered)) - 1, 0)
    return ordered[min(k, len(ordered) - 1)]


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{ncpu} CPUs (nproc), {mem_gb:.1f} GiB RAM, {model}; Python {platform.python_version()}, {platform.system()} {platform.release()}"


def today() -> str:
    return _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")


def md_table(header: list[str], rows: list[list[object]]) -> str:
    def cell(v: object) -> str:
        return f"{v:,.1f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def run_bench(amain: Any, args: Any) -> None:
    """A benchmark's entry: bench env, cleanup on exit, one bench at a time, migrated DB, then `amain(args)`."""
    import asyncio

    use_bench_env()
    install_cleanup()
    single_instance(BENCH_DATABASE_URL, BENCH_REDIS_URL)
    migrate()
    try:
        asyncio.run(amain(args))
    finally:
        stop_all()


def cpu_ticks(pids: list[int]) -> int:
    """User + system clock ticks used so far by `pids` (those that have exited count 0)."""
    total = 0
    for p in pids:
        try:
            f = Path(f"/proc/{p}/stat").read_text()
            fields = f[f.rfind(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            continue
    return total


def meet_code() -> str:
    """A fresh Meet-style code (xxx-yyyy-zzz) for one look-alike meeting."""
    import random
    import string

    p = lambda n: "".join(random.choice(string.ascii_lowercase) for _ in range(n))  # noqa: E731
    return f"{p(3)}-{p(4)}-{p(3)}"


# --- a Meet bot in the bench's own process ----------------------------------------------------

class MeetBot:
    """One run_meet_bot task in this process, its Chromium session (spied) and its status."""

    def __init__(self, server: Any, media: Any, channels: Any, *, name: str = "Bench PAL",
                 on_in_call: Any = None, **settings: Any) -> None:
        self.server, self.media, self.channels, self.name = server, media, channels, name
        self.on_in_call = on_in_call
        # BotSettings for a bench: patient with the look-alike, never leaving by itself.
        self.settings = {"waiting_room_timeout": 60, "alone_grace": 600, "poll_interval": 0.5,
                         "prejoin_timeout": 60, **settings}
        self.stop = asyncio.Event()
        self.in_call = asyncio.Event()
        self.session: Any = None
        self.task: asyncio.Task[Any] | None = None

    async def start(self, url: str) -> None:
        """Start the bot and wait (90 s at most) until it is in the call."""
        from workers.meet_bot import BotSettings, parse_browser_args, run_meet_bot
        from workers.meet_bot import bot as bot_mod

        real = bot_mod.ChromiumSession
        bench = self

        class Spied(real):  # type: ignore[misc, valid-type]
            def __init__(self, *a: Any, **kw: Any) -> None:
                super().__init__(*a, **kw)
                bench.session = self

        async def on_status(status: str, _reason: str | None) -> None:
            if status == "in_call":
                self.in_call.set()
                if self.on_in_call is not None:
                    self.on_in_call()

        settings = BotSettings(extra_args=parse_browser_args(self.server.browser_args_env()), **self.settings)
        bot_mod.ChromiumSession = Spied  # type: ignore[misc]
        self.task = asyncio.create_task(run_meet_bot(url, self.name, self.media, settings, on_status=on_status,
                                                     stop=self.stop, channels=self.channels))
        try:
            await asyncio.wait_for(self.in_call.wait(), 90)
        finally:
            bot_mod.ChromiumSession = real  # type: ignore[misc]

    async def close(self) -> Any:
        self.stop.set()
        if self.task is None:
            return None
        return await asyncio.wait_for(self.task, 60)

    def tree(self) -> list[int]:
        """The pids of the bot's Chromium and its children."""
        from workers.meet_bot import procs

        return procs.descendants(self.session.pid) if self.session and self.session.pid else []
