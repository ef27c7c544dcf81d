"""Name resolution for outbound connections that must be checked first (agent links,
webhooks, a PAL's own LLM/TTS endpoint): the addresses, then app/domain/agent_links.py's
`address_refusal` on them, then a connection to a checked address only."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

AddrInfo = tuple[int, int, int, str, tuple[Any, ...]]
Resolver = Callable[[str, int], Awaitable[list[AddrInfo]]]


async def resolve(host: str, port: int) -> list[AddrInfo]:
    """getaddrinfo for a TCP connection to host:port (tests pass their own Resolver)."""
    return await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                        proto=socket.IPPROTO_TCP)


def addresses_of(infos: Iterable[AddrInfo]) -> list[str]:
    """The distinct addresses of getaddrinfo's answer, in its order."""
    return list(dict.fromkeys(str(info[4][0]) for info in infos))
