"""The typed GraphQL schema (issue 13): enums, DateTime, ID, typed layers, cursor pages on both
APIs, and nested lists that cost a bounded number of SQL queries (DataLoaders).

Real PostgreSQL; the app in-process over ASGI. Queries sent to PostgreSQL are counted at
asyncpg's Connection, below Piccolo, so every statement counts (authentication included).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import asyncpg
import pytest

from app.domain.join_state import JoinStatus as DomainJoinStatus, event_kinds
from app.domain.platforms import Platform as DomainPlatform
from app.services import pals as pal_service
from app.services.accounts import authenticate
from app.tables import CalendarEvent, Join, JoinStatusChange, Pal
from tests.fixtures import graphql

FACE = "r90bbd427f71"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def h(key: str) -> dict[str, str]:
    return {"x-api-key": key}


# --- helpers ------------------------------------------------------------------

@contextmanager
def counted_queries() -> Iterator[list[str]]:
    """Every statement any asyncpg connection sends while inside (Piccolo runs all its queries
    through fetch/execute of a pooled Connection). The pool sends no reset query of its own
    when it takes a connection back (app/db.py), so none is left out."""
    sent: list[str] = []
    originals = {name: getattr(asyncpg.connection.Connection, name) for name in ("fetch", "execute", "fetchrow", "fetchval")}

    def wrap(name):
        original = originals[name]

        async def counting(self, query, *args, **kwargs):
            sent.append(query)
            return await original(self, query, *args, **kwargs)
        return counting

    for name in originals:
        setattr(asyncpg.connection.Connection, name, wrap(name))
    try:
        yield sent
    finally:
        for name, original in originals.items():
            setattr(asyncpg.connection.Connection, name, original)


async def seed_pals(key: str, count: int, *, joins_each: int = 2, meetings_each: int = 2) -> list[str]:
    """`count` PALs, each with joins and invitations, written in bulk (fast)."""
    account = await authenticate(key)
    now = datetime.now(timezone.utc)
    pal_rows = await Pal.insert(*[Pal(pal_id=f"p{account.id:03d}{n:08d}", account=account.id, pal_name=f"PAL {n}",
                                      created_at=now, updated_at=now) for n in range(count)]).returning(Pal.id, Pal.pal_id)
    joins, events = [], []
    for row in pal_rows:
        for j in range(joins_each):
            start = now + timedelta(hours=j + 1)
            joins.append(Join(pal=row["id"], recurrence_id="", meeting_url="https://meet.google.com/abc-defg-hij",
                              start_at=start, end_at=start + timedelta(hours=1), join_at=start - timedelta(minutes=1),
                              status="scheduled", plan_version=1, created_at=now, updated_at=now))
        for m in range(meetings_each):
            events.append(CalendarEvent(pal=row["id"], uid=f"{row['pal_id']}-{m}@acme.com", organizer="alex@acme.com",
                                        summary=f"Sync {m}", decision="accepted", platform="google_meet",
                                        created_at=now, updated_at=now))
    if joins:
        await Join.insert(*joins)
    if events:
        await CalendarEvent.insert(*events)
    return [r["pal_id"] for r in pal_rows]


NESTED = """query($first: Int, $after: String) { pals(first: $first, after: $after) {
  pageInfo { endCursor hasNextPage }
  nodes { palId
    joins(first: 5, upcoming: true) { nodes { id status joinAt } pageInfo { hasNextPage } }
    meetings(first: 5) { nodes { eventId summary decision platform } } } } }"""


# --- N+1 ----------------------------------------------------------------------

async def test_listing_100_pals_with_joins_and_meetings_is_a_bounded_number_of_queries(client, api_key):
    """The DataLoaders batch each nested list into one query for the whole page of PALs:
    without them this is 1 + 2 x 100 queries; with them the count does not grow with the PALs."""
    ids = await seed_pals(api_key, 100)
    await graphql(client, api_key, "{ faces { faceId } }")  # the key is now in the auth cache
    with counted_queries() as few:
        small = await graphql(client, api_key, NESTED, first=10)
    with counted_queries() as many:
        data = await graphql(client, api_key, NESTED, first=100)
    assert "errors" not in data, data
    pals = data["data"]["pals"]["nodes"]
    assert [p["palId"] for p in pals] == ids
    assert all(len(p["joins"]["nodes"]) == 2 and len(p["meetings"]["nodes"]) == 2 for p in pals)
    assert {m["summary"] for m in pals[7]["meetings"]["nodes"]} == {"Sync 0", "Sync 1"}
    assert pals[0]["joins"]["nodes"][0]["status"] == "SCHEDULED"
    # PALs page + joins + meetings (+ the key check when the cache is cold): the same for 10 and 100.
    assert len(many) <= 4, many
    assert len(many) == len(few), (few, many)
    assert len(small["data"]["pals"]["nodes"]) == 10


async def test_nested_page_arguments_still_batch_and_a_bad_cursor_fails_only_its_field(client, api_key):
    await seed_pals(api_key, 3)
    query = """{ pals { nodes { palId a: joins(first: 1) { nodes { id } pageInfo { hasNextPage endCursor } }
                                b: joins(first: 1, after: "bogus") { nodes { id } } } } }"""
    data = await graphql(client, api_key, query)
    assert data["errors"] and all(e["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"} for e in data["errors"])
    assert data["data"] is None  # the connections are non-null, so the error reaches the root
    ok = await graphql(client, api_key, "{ pals { nodes { joins(first: 1) { pageInfo { hasNextPage endCursor } } } } }")
    page = ok["data"]["pals"]["nodes"][0]["joins"]["pageInfo"]
    assert page["hasNextPage"] is True and page["endCursor"]


# --- pagination: GraphQL and REST page the same way ---------------------------------

async def test_pals_page_with_opaque_cursors_on_both_apis(client, api_key, other_api_key):
    ids = await seed_pals(api_key, 5, joins_each=0, meetings_each=0)
    await seed_pals(other_api_key, 2, joins_each=0, meetings_each=0)
    query = "query($first: Int, $after: String) { pals(first: $first, after: $after) { nodes { palId } pageInfo { endCursor hasNextPage } } }"
    seen, after, pages = [], None, 0
    while True:
        page = (await graphql(client, api_key, query, first=2, after=after))["data"]["pals"]
        seen += [p["palId"] for p in page["nodes"]]
        pages += 1
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == ids and pages == 3
    rest, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = (await client.get("/v2/pals", params=params, headers=h(api_key))).json()
        assert body["total_count"] == 5
        rest += [p["pal_id"] for p in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert rest == ids
    # The default page (50) holds them all and says there is no next one.
    whole = (await client.get("/v2/pals", headers=h(api_key))).json()
    assert len(whole["data"]) == 5 and whole["next_cursor"] is None


@pytest.mark.parametrize("first", [0, -1, 201])
async def test_page_size_is_bounded(client, api_key, first):
    data = await graphql(client, api_key, "query($f: Int) { pals(first: $f) { nodes { palId } } }", f=first)
    assert data["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
    rest = await client.get("/v2/pals", params={"limit": first}, headers=h(api_key))
    assert rest.status_code == 400 and rest.json()["field"] == "limit", rest.text


@pytest.mark.parametrize("cursor", ["nope", "=" * 5, "eyJhIjoxfQ", "WyJqb2lucyIsMV0", "x" * 300])
async def test_foreign_or_forged_cursors_are_a_clear_400(client, api_key, cursor):
    [pal_id] = await seed_pals(api_key, 1)
    data = await graphql(client, api_key, "query($a: String) { pals(after: $a) { nodes { palId } } }", a=cursor)
    assert data["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}, data
    for path in ("/v2/pals", f"/v2/pals/{pal_id}/joins", f"/v2/pals/{pal_id}/meetings"):
        response = await client.get(path, params={"cursor": cursor}, headers=h(api_key))
        assert response.status_code == 400 and response.json()["field"] == "cursor", (path, response.text)


async def test_joins_and_meetings_page_newest_first_and_upcoming_soonest_first(client, api_key):
    [pal_id] = await seed_pals(api_key, 1, joins_each=5, meetings_each=3)
    pk = await pal_service.owned_pal_pk((await authenticate(api_key)).id, pal_id)
    done = (await Join.select(Join.id).where(Join.pal == pk).order_by(Join.join_at).first())["id"]
    await Join.update({Join.status: "left"}).where(Join.id == done)
    rest = (await client.get(f"/v2/pals/{pal_id}/joins", params={"limit": 2}, headers=h(api_key))).json()
    assert rest["total_count"] == 5 and rest["next_cursor"]
    rest2 = (await client.get(f"/v2/pals/{pal_id}/joins", params={"limit": 10, "cursor": rest["next_cursor"]},
                              headers=h(api_key))).json()
    newest_first = [j["join_at"] for j in rest["data"] + rest2["data"]]
    assert newest_first == sorted(newest_first, reverse=True) and len(newest_first) == 5
    upcoming = (await client.get(f"/v2/pals/{pal_id}/joins", params={"upcoming": "true"}, headers=h(api_key))).json()
    assert [j["status"] for j in upcoming["data"]] == ["scheduled"] * 4 and upcoming["total_count"] == 4
    assert [j["join_at"] for j in upcoming["data"]] == sorted(newest_first)[1:]
    # A cursor of one order is refused by the other.
    refused = await client.get(f"/v2/pals/{pal_id}/joins", params={"upcoming": "true", "cursor": rest["next_cursor"]},
                               headers=h(api_key))
    assert refused.status_code == 400 and refused.json()["field"] == "cursor"
    gql = await graphql(client, api_key, """query($id: ID!, $after: String) { pal(palId: $id) {
        joins(first: 2, after: $after) { nodes { joinAt } }
        meetings(first: 2) { nodes { summary } pageInfo { hasNextPage endCursor } } } }""",
                        id=pal_id, after=rest["next_cursor"])
    assert [j["joinAt"] for j in gql["data"]["pal"]["joins"]["nodes"]] == [j["join_at"] for j in rest2["data"][:2]]
    meetings = gql["data"]["pal"]["meetings"]
    assert [m["summary"] for m in meetings["nodes"]] == ["Sync 2", "Sync 1"] and meetings["pageInfo"]["hasNextPage"]
    rest_meetings = (await client.get(f"/v2/pals/{pal_id}/meetings", params={
        "cursor": meetings["pageInfo"]["endCursor"]}, headers=h(api_key))).json()
    assert [m["summary"] for m in rest_meetings["data"]] == ["Sync 0"] and rest_meetings["next_cursor"] is None


# --- types ----------------------------------------------------------------------

async def test_enums_are_generated_from_the_domain_and_instants_are_utc_z(client, api_key):
    data = (await graphql(client, api_key, """{ s: __type(name: "JoinStatus") { enumValues { name } }
        p: __type(name: "Platform") { enumValues { name } } k: __type(name: "PalEventKind") { enumValues { name } }
        d: __type(name: "DateTime") { kind specifiedByURL } }"""))["data"]
    assert [v["name"] for v in data["s"]["enumValues"]] == [s.name for s in DomainJoinStatus]
    assert [v["name"] for v in data["p"]["enumValues"]] == [p.name for p in DomainPlatform]
    assert {v["name"] for v in data["k"]["enumValues"]} == {k.upper() for k in event_kinds()}
    assert data["d"]["kind"] == "SCALAR"
    [pal_id] = await seed_pals(api_key, 1, joins_each=1, meetings_each=0)
    got = await graphql(client, api_key, """query($id: ID!) { pal(palId: $id) { palId createdAt pipelineMode
        joins { nodes { id startAt endAt joinAt updatedAt } } } }""", id=pal_id)
    pal = got["data"]["pal"]
    assert pal["pipelineMode"] == "FULL" and ISO_Z.match(pal["createdAt"])
    join = pal["joins"]["nodes"][0]
    assert isinstance(join["id"], str) and join["id"].isdigit()
    assert all(ISO_Z.match(join[k]) for k in ("startAt", "endAt", "joinAt", "updatedAt")), join


async def test_a_free_text_failure_is_error_with_its_detail(client, api_key):
    [pal_id] = await seed_pals(api_key, 1, joins_each=1, meetings_each=0)
    join_id = (await Join.select(Join.id).first())["id"]
    now = datetime.now(timezone.utc)
    await Join.update({Join.status: "failed", Join.reason: "error: RuntimeError: boom"}).where(Join.id == join_id)
    await JoinStatusChange.insert(JoinStatusChange(join=join_id, status="failed", reason="error: RuntimeError: boom", at=now))
    got = await graphql(client, api_key, """query($j: ID!) { join(id: $j) { status reason reasonDetail
        history { status reason reasonDetail } } }""", j=str(join_id))
    join = got["data"]["join"]
    assert (join["status"], join["reason"], join["reasonDetail"]) == ("FAILED", "ERROR", "error: RuntimeError: boom")
    assert join["history"][-1] == {"status": "FAILED", "reason": "ERROR", "reasonDetail": "error: RuntimeError: boom"}
    await Join.update({Join.reason: "waiting_room_timeout"}).where(Join.id == join_id)
    got = await graphql(client, api_key, "query($j: ID!) { join(id: $j) { reason reasonDetail } }", j=join_id)
    assert got["data"]["join"] == {"reason": "WAITING_ROOM_TIMEOUT", "reasonDetail": "waiting_room_timeout"}
    for bad in ("abc", "0", "99999999999", "-1"):
        missing = await graphql(client, api_key, "query($j: ID!) { join(id: $j) { id } }", j=bad)
        assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND", (bad, missing)


# --- typed layers and updatePal ---------------------------------------------------------

LAYERS = """palId palName pipelineMode conferencingEmail
  conferencing { username email allowlist } realtime { websocketUrl }
  llm { model baseUrl apiKeySet } tts { provider voice model baseUrl apiKeySet }"""


async def test_typed_layers_never_show_a_key_and_update_pal_changes_only_what_is_given(client, api_key):
    secret = "sk-live-0123456789abcdef"
    created = (await client.post("/v2/pals", headers=h(api_key), json={
        "pal_name": "Anna", "default_face_id": FACE, "layers": {
            "conferencing": {"username": "anna", "allowlist": ["alex@acme.com"]},
            "llm": {"model": "small", "base_url": "http://127.0.0.1:9/v1", "api_key": secret},
            "tts": {"provider": "espeak-ng", "voice": "en"}}})).json()
    query = f"query($id: ID!) {{ pal(palId: $id) {{ {LAYERS} }} }}"
    raw = await client.post("/graphql", headers=h(api_key), json={"query": query, "variables": {"id": created["pal_id"]}})
    pal = raw.json()["data"]["pal"]
    assert pal["conferencing"] == {"username": "anna", "email": "anna@tavusinvite.com", "allowlist": ["alex@acme.com"]}
    assert pal["llm"] == {"model": "small", "baseUrl": "http://127.0.0.1:9/v1", "apiKeySet": True}
    assert pal["tts"] == {"provider": "espeak-ng", "voice": "en", "model": None, "baseUrl": None, "apiKeySet": False}
    assert pal["realtime"] is None and secret not in raw.text

    update = f"mutation($id: ID!, $input: UpdatePalInput!) {{ updatePal(palId: $id, input: $input) {{ {LAYERS} }} }}"
    changed = await graphql(client, api_key, update, id=created["pal_id"], input={
        "palName": "Anna B", "pipelineMode": "ECHO", "conferencing": {"allowlist": [".*@acme\\.com"]}})
    after = changed["data"]["updatePal"]
    assert (after["palName"], after["pipelineMode"]) == ("Anna B", "ECHO")
    assert after["conferencing"] == {"username": "anna", "email": "anna@tavusinvite.com", "allowlist": [".*@acme\\.com"]}
    assert after["llm"]["apiKeySet"] is True  # untouched layers stay
    rest = (await client.get(f"/v2/pals/{created['pal_id']}", headers=h(api_key))).json()
    assert rest["pipeline_mode"] == "echo" and rest["layers"]["llm"]["api_key_set"] is True
    assert secret not in str(rest)  # neither API shows a stored key; it stays sealed
    from app.secret_box import unseal
    from app.tables import Pal

    sealed = (await Pal.select(Pal.secrets).where(Pal.pal_id == created["pal_id"]).first())["secrets"]
    assert unseal(sealed) == {"llm": secret}

    agent = await graphql(client, api_key, update, id=created["pal_id"],
                          input={"realtime": {"websocketUrl": "wss://agent.example.com/pal"}})
    assert agent["data"]["updatePal"]["realtime"] == {"websocketUrl": "wss://agent.example.com/pal"}
    dropped = await graphql(client, api_key, update, id=created["pal_id"], input={"realtime": None})
    assert dropped["data"]["updatePal"]["realtime"] is None
    rest = (await client.get(f"/v2/pals/{created['pal_id']}", headers=h(api_key))).json()
    taken = await graphql(client, api_key, update, id=created["pal_id"], input={"conferencing": {"username": "bot1"}})
    assert taken["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "layers.conferencing.username"}
    unchanged = (await client.get(f"/v2/pals/{created['pal_id']}", headers=h(api_key))).json()
    assert unchanged == rest  # a refused update changes nothing
    missing = await graphql(client, api_key, update, id="pnope", input={"palName": "X"})
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    bad_enum = await graphql(client, api_key, update, id=created["pal_id"], input={"pipelineMode": "LOUD"})
    assert bad_enum["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT"}
    assert "'LOUD' does not exist in 'PipelineMode'" in bad_enum["errors"][0]["message"]


# --- limits -----------------------------------------------------------------------

def _nested(levels: int) -> str:
    return "{ " + "pals { nodes { " * (levels // 2) + "palId" + " } }" * (levels // 2) + " }"


@pytest.mark.parametrize("query, word, setting", [
    ("{" + " ".join(f"a{i}: faces {{ name }}" for i in range(16)) + "}", "alias", "GRAPHQL_MAX_ALIASES"),
    (_nested(12), "deep", "GRAPHQL_MAX_DEPTH"),
    ("{ faces { " + "name " * 1200 + "} }", "token", None),
], ids=["aliases", "depth", "tokens"])
async def test_documents_over_a_limit_get_a_clear_error_and_introspection_stays_on(client, api_key, query, word,
                                                                                  setting):
    response = await client.post("/graphql", json={"query": query}, headers=h(api_key))
    body = response.json()
    extensions = body["errors"][0]["extensions"]
    assert body.get("data") is None and extensions["code"] == "QUERY_TOO_COMPLEX", body
    assert extensions.get("limit") == setting and word in body["errors"][0]["message"].lower(), body
    # Just under the limits is fine, and introspection is on.
    ok = await graphql(client, api_key, "{ __schema { queryType { name } } a: faces { name } b: pals { nodes { palId } } }")
    assert ok["data"]["__schema"]["queryType"]["name"] == "Query"
