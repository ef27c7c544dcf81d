"""Bounds on what one HTTP request may cost: JSON nesting, and slow clients on a real server.

Deeply nested JSON used to reach recursive code (parsers, deepcopy, the jsonb encoder) and
come back as a 500, or be stored and break every later read. Slow clients used to hold a
connection for as long as they kept sending a byte now and then.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

from tests.fixtures import graphql
from tests.servers import free_port, wait_healthy

ROOT = Path(__file__).resolve().parents[2]
FACE = "r90bbd427f71"
DEEP = 990


def h(key: str) -> dict[str, str]:
    return {"x-api-key": key, "content-type": "application/json"}


def nested(depth: int, leaf: object = 1) -> object:
    """`depth` levels of objects and arrays, built without recursion."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def deep_text(depth: int) -> str:
    return "[" * depth + "]" * depth


async def make_pal(client, key, **fields) -> dict:
    body = {"pal_name": "Anna", "default_face_id": FACE, **fields}
    response = await client.post("/v2/pals", json=body, headers=h(key))
    assert response.status_code == 200, response.text
    return response.json()


def assert_too_deep(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert "nested deeper than" in body["error"] and "MAX_JSON_DEPTH" in body["error"], body
    assert body["field"] == "body" and body["code"] == "BAD_USER_INPUT"


# --- JSON nesting --------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["application/json", "text/plain", None])
async def test_deep_json_bodies_are_a_clear_400_on_every_json_endpoint(client, api_key, content_type):
    pal = await make_pal(client, api_key)
    headers = {"x-api-key": api_key}
    if content_type:
        headers["content-type"] = content_type
    deep_pal = '{"pal_name": "x", "layers": {"a": ' + deep_text(DEEP) + "}}"
    deep_patch = '[{"op": "add", "path": "/layers/a", "value": ' + deep_text(DEEP) + "}]"
    deep_conversation = '{"pal_id": "' + pal["pal_id"] + '", "meeting_url": ' + deep_text(DEEP) + "}"
    for method, path, text in [
        ("POST", "/v2/pals", deep_pal),
        ("PATCH", f"/v2/pals/{pal['pal_id']}", deep_patch),
        ("POST", "/v2/conversations", deep_conversation),
    ]:
        response = await client.request(method, path, content=text.encode(), headers=headers)
        assert_too_deep(response)
    # Nothing was stored on the way.
    again = (await client.get(f"/v2/pals/{pal['pal_id']}", headers=headers)).json()
    assert again["layers"] == {}
    assert len((await client.get("/v2/pals", headers=headers)).json()["data"]) == 1


async def test_deep_graphql_bodies_and_variables_are_a_clear_400(client, api_key):
    body = '{"query": "mutation($i: CreatePalInput!) { createPal(input: $i) { palId } }", ' \
           '"variables": {"i": {"palName": "x", "layers": {"a": ' + deep_text(DEEP) + "}}}}"
    response = await client.post("/graphql", content=body.encode(), headers=h(api_key))
    assert_too_deep(response)
    response = await client.get("/graphql", params={"query": "query($v: JSON) { pals { nodes { palId } } }",
                                                    "variables": '{"v": ' + deep_text(DEEP) + "}"},
                                headers={"x-api-key": api_key, "accept": "application/json"})
    assert response.status_code == 400, response.text
    assert "nested deeper than" in response.json()["error"]
    # Any text in the query string is fine (the scan reads bytes, not characters).
    response = await client.get("/graphql", params={"query": "query($v: String!) { checkUsername(username: $v) { available } }",
                                                    "variables": json.dumps({"v": "€[{"}, ensure_ascii=False)},
                                headers={"x-api-key": api_key, "accept": "application/json"})
    assert response.status_code == 200 and response.json()["data"]["checkUsername"]["available"] is False, response.text
    # Just under the limit is fine; the server keeps serving.
    ok = await graphql(client, api_key, 'mutation($v: JSON!) { patchPal(palId: "pnope", operations: $v) { palId } }',
                       v=nested(28))
    assert ok["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_brackets_inside_strings_do_not_count(client, api_key):
    prompt = "[" * 5000 + "{" * 5000 + '\\"['
    pal = await make_pal(client, api_key, system_prompt=prompt)
    assert pal["system_prompt"] == prompt


def objects(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = {"a": value}
    return value


async def test_stored_layers_depth_is_bounded_on_create_and_across_patches(client, api_key):
    from app.domain.pal_document import MAX_LAYERS_DEPTH

    # `layers` itself is the first level.
    pal = await make_pal(client, api_key, layers={"notes": objects(MAX_LAYERS_DEPTH - 1)})
    assert pal["layers"]["notes"] == objects(MAX_LAYERS_DEPTH - 1)
    too_deep = {"pal_name": "x", "layers": {"notes": objects(MAX_LAYERS_DEPTH)}}
    response = await client.post("/v2/pals", json=too_deep, headers=h(api_key))
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "layers" and "nested deeper than" in response.json()["error"]
    gql = await graphql(client, api_key, "mutation($i: CreatePalInput!) { createPal(input: $i) { palId } }",
                        i={"palName": "x", "layers": {"notes": objects(MAX_LAYERS_DEPTH)}})
    assert gql["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "layers"}
    # Each patch is shallow enough to pass the body check; together they would build a deep document.
    url = f"/v2/pals/{pal['pal_id']}"
    half = MAX_LAYERS_DEPTH // 2
    ops = [{"op": "add", "path": "/layers/extra", "value": objects(half)}]
    assert (await client.patch(url, json=ops, headers=h(api_key))).status_code == 200
    deeper = [{"op": "add", "path": "/layers/extra" + "/a" * (half - 1) + "/b", "value": objects(half)}]
    response = await client.patch(url, json=deeper, headers=h(api_key))
    assert response.status_code == 400, response.text
    assert response.json()["field"] == "layers" and "nested deeper than" in response.json()["error"]
    gql = await graphql(client, api_key, "mutation($id: ID!, $ops: JSON!) { patchPal(palId: $id, operations: $ops) { palId } }",
                        id=pal["pal_id"], ops=deeper)
    assert gql["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "layers"}
    # Every stored PAL still reads back over both APIs.
    assert (await client.get(url, headers=h(api_key))).status_code == 200
    listed = await graphql(client, api_key, "query { pals { nodes { palId layers } } }")
    assert listed.get("errors") is None and len(listed["data"]["pals"]["nodes"]) == 1


async def test_raw_and_multipart_bodies_are_not_scanned_as_json(client, api_key):
    # Face uploads are binary: brackets in them mean nothing.
    from tests.integration.test_faces_api import upload

    response = await upload(client, api_key, name="Brackets", audio=b"[" * 100)
    assert response.status_code == 400 and response.json()["field"] == "audio", response.text


# --- slow clients, against `python -m app serve` on loopback ------------------------

HEADER_TIMEOUT, BODY_TIMEOUT, KEEP_ALIVE, MIN_RATE = 1.0, 1.5, 1.0, 1000
SLACK = 1.5  # scheduling on a busy 2-core machine


_free_port = free_port


@asynccontextmanager
async def serve(**env: str) -> AsyncIterator[int]:
    """`python -m app serve` (the production entry point) on a free loopback port."""
    port = _free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", "serve", cwd=ROOT,
        env={**os.environ, "API_HOST": "127.0.0.1", "API_PORT": str(port), "LOG_LEVEL": "WARNING", **env})
    try:
        await wait_healthy(process, f"http://127.0.0.1:{port}")
        yield port
    finally:
        process.terminate()
        await process.wait()


@pytest.fixture(scope="module")
async def slow_server(database: None) -> AsyncIterator[int]:
    async with serve(HTTP_HEADER_TIMEOUT_SECONDS=str(HEADER_TIMEOUT), HTTP_BODY_TIMEOUT_SECONDS=str(BODY_TIMEOUT),
                     HTTP_KEEP_ALIVE_SECONDS=str(KEEP_ALIVE), HTTP_BODY_MIN_BYTES_PER_SECOND=str(MIN_RATE)) as port:
        yield port


async def _held_for(port: int, first: bytes, trickle: bytes, *, every: float = 0.25,
                    give_up: float = 8.0) -> tuple[float, bytes]:
    """Send `first`, then `trickle` every `every` s; (seconds until the server closed, what it said)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    start = time.monotonic()
    received = b""

    async def drip() -> None:
        try:
            writer.write(first)
            while True:
                await writer.drain()
                await asyncio.sleep(every)
                writer.write(trickle)
        except (ConnectionError, OSError):
            pass

    dripping = asyncio.create_task(drip())
    try:
        async with asyncio.timeout(give_up):
            while chunk := await reader.read(65536):
                received += chunk
    except (ConnectionError, OSError):
        pass
    except TimeoutError:
        return float("inf"), received
    finally:
        dripping.cancel()
        writer.close()
    return time.monotonic() - start, received


async def test_clients_trickling_headers_are_dropped(slow_server):
    first = b"POST /v2/pals HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    results = await asyncio.gather(*(_held_for(slow_server, first, b"a") for _ in range(50)))
    held = sorted(seconds for seconds, _ in results)
    assert held[-1] <= HEADER_TIMEOUT + SLACK, held


async def test_a_connection_that_sends_nothing_is_dropped(slow_server):
    held, said = await _held_for(slow_server, b"", b"", every=0.5)
    assert held <= HEADER_TIMEOUT + SLACK and said == b""


async def test_clients_trickling_the_body_get_408_and_are_dropped(slow_server, api_key):
    head = (f"POST /v2/pals HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {api_key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode()
    results = await asyncio.gather(*(_held_for(slow_server, head + b'{"pal_name": "', b"x") for _ in range(20)))
    for held, said in results:
        assert held <= BODY_TIMEOUT + SLACK, (held, said)
        assert said.startswith(b"HTTP/1.1 408 "), said
        assert json.loads(said.split(b"\r\n\r\n", 1)[1])["code"] == "REQUEST_TIMEOUT"
    # A body the handler never reads (no API key: 401 at once) is cut off all the same.
    head = (b"POST /v2/conversations/cnope/end HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n")
    held, said = await _held_for(slow_server, head, b"x")
    assert held <= BODY_TIMEOUT + SLACK and said.startswith(b"HTTP/1.1 401 "), (held, said)


async def _response(reader: asyncio.StreamReader) -> bytes:
    """One whole response with a content-length."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return head + await reader.readexactly(length)


async def test_a_body_sent_at_a_fair_rate_is_never_cut(slow_server, api_key):
    body = json.dumps({"pal_name": "Slow but steady", "system_prompt": "x" * 3900}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", slow_server)
    writer.write((f"POST /v2/pals HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: {api_key}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode())
    start = time.monotonic()
    for offset in range(0, len(body), 400):  # ~1600 bytes/s, above the minimum rate, for ~2.5 s
        writer.write(body[offset:offset + 400])
        await writer.drain()
        await asyncio.sleep(0.25)
    assert time.monotonic() - start > BODY_TIMEOUT
    response = await asyncio.wait_for(_response(reader), 5)
    assert response.startswith(b"HTTP/1.1 200 "), response
    # Kept alive for another request, then closed once idle for the keep-alive timeout.
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert (await asyncio.wait_for(_response(reader), 5)).startswith(b"HTTP/1.1 200 ")
    idle = time.monotonic()
    assert await asyncio.wait_for(reader.read(65536), KEEP_ALIVE + SLACK + 1) == b""
    assert time.monotonic() - idle <= KEEP_ALIVE + SLACK
    writer.close()
