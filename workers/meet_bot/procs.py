"""Linux /proc helpers: Chromium's process tree, its memory, and killing what is left of it.

Chromium forks a zygote, GPU, network and renderer processes that share our process group,
so killpg is not an option; we walk parent links instead.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

_PROC = Path("/proc")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a live process, or None."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2:].split()
    return fields[0], int(fields[1])


def descendants(pid: int) -> list[int]:
    """pid and all its live descendants (zombies excluded)."""
    children: dict[int, list[int]] = {}
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st is not None and st[0] != "Z":
            children.setdefault(st[1], []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        st = _stat(p)
        if st is None or st[0] == "Z":
            continue
        out.append(p)
        todo.extend(children.get(p, ()))
    return out


def pids_with_arg(fragment: str) -> list[int]:
    """Live processes whose command line contains `fragment` (e.g. a profile dir)."""
    found = []
    needle = fragment.encode()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmd:
            st = _stat(int(entry.name))
            if st is not None and st[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    st = _stat(pid)
    return st is not None and st[0] != "Z"


def kill_all(pids: list[int]) -> None:
    for p in pids:
        if p == os.getpid():
            continue
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def memory_kib(pids: list[int]) -> tuple[int, int]:
    """(PSS, RSS) in KiB summed over `pids`; PSS shares common pages fairly between processes."""
    pss = rss = 0
    for p in pids:
        try:
            for line in (_PROC / str(p) / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss += int(line.split()[1])
                elif line.startswith("Rss:"):
                    rss += int(line.split()[1])
        except OSError:
            continue
    return pss, rss
