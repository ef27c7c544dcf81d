"""The /status page in headless Chromium: a worker's state change appears without a reload."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.integration.test_live_status import (  # noqa: F401  (live_server is a fixture)
    live_server,
    make_join,
    make_pal,
    status,
    worker_process,
)

CHROMIUM = "/usr/bin/chromium"
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="needs Debian's chromium"),
]


@pytest.fixture
async def tab(live_server) -> AsyncIterator[Any]:
    import nodriver as uc

    profile = tempfile.mkdtemp(prefix="nd-status-")
    config = uc.Config(browser_executable_path=CHROMIUM, headless=True, sandbox=False, user_data_dir=profile,
                       browser_args=["--disable-gpu", "--no-first-run", "--disable-sync",
                                     "--disable-background-networking", "--disable-component-update"])
    browser = await uc.start(config=config)
    # nodriver pipes Chromium's output and never reads it; drain so Chromium cannot block.
    drains = [asyncio.create_task(stream.read()) for stream in
              (browser._process.stdout, browser._process.stderr) if stream is not None]
    try:
        page = await browser.get(f"{live_server.base_url}/status")
        await page
        yield page
    finally:
        browser.stop()
        await asyncio.wait_for(browser._process.wait(), 10)
        for task in drains:
            task.cancel()
        shutil.rmtree(profile, ignore_errors=True)


async def js(tab, expression: str) -> Any:
    """Evaluate and decode JSON (nodriver returns RemoteObjects for falsy values and errors)."""
    raw = await tab.evaluate(f"JSON.stringify({expression})", return_by_value=True)
    assert isinstance(raw, str), f"evaluation failed: {raw!r}"
    return json.loads(raw)


async def wait_for(tab, expression: str, expected: Any, timeout: float = 15) -> Any:
    value = None
    for _ in range(int(timeout / 0.1)):
        value = await js(tab, expression)
        if value == expected:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{expression} stayed {value!r}, expected {expected!r}")


def joins_of(pal_id: str, kind: str) -> str:
    return (f"[...document.querySelectorAll('#pal-{pal_id} ul.{kind} li[data-join-id]')]"
            ".map(li => [Number(li.dataset.joinId), li.dataset.status])")  # status: the JoinStatus name


async def test_status_page_is_served_with_a_strict_csp(live_server):
    async with httpx.AsyncClient(base_url=live_server.base_url) as http:
        page = await http.get("/status")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert '<meta name="max-subscriptions" content="4">' in page.text
        assert (await http.get("/status/status.js")).status_code == 200
        assert (await http.get("/status/secrets.txt")).status_code == 404


async def test_worker_state_change_appears_live(tab, api_key, other_api_key):
    anna = await make_pal(api_key, "anna")
    bert = await make_pal(api_key, "bert")
    await make_pal(other_api_key, "stranger")
    join_id = await make_join(anna, in_minutes=0)
    later = await make_join(bert, in_minutes=90)

    await (await tab.select("#api-key")).send_keys(api_key)
    await (await tab.select("button[type=submit]")).click()
    await wait_for(tab, "document.getElementById('connection').dataset.state", "live")
    await wait_for(tab, "[...document.querySelectorAll('section.pal h2')].map(h => h.textContent).sort()",
                   ["Anna", "Bert"])
    assert "anna@tavusinvite.com" in await js(tab, f"document.querySelector('#pal-{anna.pal_id} .email').textContent")
    await wait_for(tab, joins_of(anna.pal_id, "upcoming"), [[join_id, "SCHEDULED"]])
    await wait_for(tab, joins_of(bert.pal_id, "upcoming"), [[later, "SCHEDULED"]])
    await tab.evaluate("window.__sameDocument = true")

    await worker_process(status(join_id, "joining"), status(join_id, "in_call"))
    await wait_for(tab, joins_of(anna.pal_id, "live"), [[join_id, "IN_CALL"]])
    assert await js(tab, joins_of(anna.pal_id, "upcoming")) == []
    await worker_process(status(join_id, "left"))
    await wait_for(tab, joins_of(anna.pal_id, "live"), [])
    assert await js(tab, "window.__sameDocument === true") is True  # updated in place, never reloaded
    await wait_for(tab, f"[...document.querySelectorAll('#pal-{anna.pal_id} ul.log li')].map(li => li.dataset.kind)",
                   ["LEFT", "IN_CALL", "JOINING"])  # newest first


async def test_wrong_key_is_reported(tab):
    await (await tab.select("#api-key")).send_keys("pal_not-a-real-key")
    await (await tab.select("button[type=submit]")).click()
    await wait_for(tab, "document.getElementById('connection').dataset.state", "error")
    assert "API key" in await js(tab, "document.getElementById('connection').textContent")
