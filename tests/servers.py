"""Helpers for tests that run the API as a real process on loopback."""

from __future__ import annotations

import asyncio
import socket

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_healthy(process: asyncio.subprocess.Process, base_url: str, *, attempts: int = 200) -> None:
    """Poll GET /healthz until it answers 200; fail if the process exits or it never does."""
    async with httpx.AsyncClient() as http:
        for _ in range(attempts):
            try:
                if (await http.get(f"{base_url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert process.returncode is None, "API process exited"
            await asyncio.sleep(0.1)
    raise AssertionError("API did not start")
