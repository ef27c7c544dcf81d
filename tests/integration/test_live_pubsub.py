"""The API process's one Redis PubSub, driven directly against the test Redis."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import redis.asyncio as aioredis

from app.graphql.subscriptions import channels_plugin
from tests.conftest import TEST_REDIS_URL


async def test_first_subscriptions_at_once_all_receive_every_event() -> None:
    """A page that follows several PALs subscribes to all of them in the same instant.

    Before the subscribe lock, each of these first subscriptions opened its own
    connection and only the last one was read, so most channels went quiet.
    """
    plugin = channels_plugin()
    backend = plugin._backend
    channels = [f"pal-events:race-{i}" for i in range(6)]
    received: dict[str, list[bytes]] = defaultdict(list)

    async def read() -> None:
        async for channel, data in backend.stream_events():
            received[channel].append(data)

    await backend.on_startup()
    reader = asyncio.create_task(read())
    publisher = aioredis.from_url(TEST_REDIS_URL)
    try:
        await asyncio.gather(*(backend.subscribe([name]) for name in channels))
        for name in channels:
            await publisher.publish(name, b"first")
            await publisher.publish(name, b"second")
        expected = {name: [b"first", b"second"] for name in channels}
        for _ in range(100):
            if dict(received) == expected:
                break
            await asyncio.sleep(0.05)
        assert dict(received) == expected
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        await backend.on_shutdown()
        await publisher.aclose()
