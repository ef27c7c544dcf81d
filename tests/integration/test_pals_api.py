"""PAL management over REST /v2 and GraphQL, against the real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from app.services import pals as pal_service
from app.services.accounts import create_account
from tests.fixtures import graphql

FACE = "r90bbd427f71"
SPEC_PAL = {
    "pal_name": "Anna",
    "system_prompt": "You are Anna, a helpful meeting assistant who takes notes and answers questions.",
    "pipeline_mode": "full",
    "default_face_id": FACE,
    "layers": {"conferencing": {"username": "anna", "allowlist": ["alex@acme.com", ".*@acme\\.com"]}},
}


def h(key: str) -> dict[str, str]:
    return {"x-api-key": key}


async def create(client, key, body=SPEC_PAL):
    return await client.post("/v2/pals", json=body, headers=h(key))


async def test_spec_create_example_returns_derived_email(client, api_key):
    response = await create(client, api_key)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["pal_id"].startswith("p") and len(body["pal_id"]) == 12
    assert body["pal_name"] == "Anna"
    assert body["conferencing_email"] == "anna@tavusinvite.com"
    assert body["created_at"].endswith("Z")
    fetched = (await client.get(f"/v2/pals/{body['pal_id']}", headers=h(api_key))).json()
    assert fetched["layers"]["conferencing"]["allowlist"] == ["alex@acme.com", ".*@acme\\.com"]
    listed = (await client.get("/v2/pals", headers=h(api_key))).json()
    assert [p["pal_id"] for p in listed["data"]] == [body["pal_id"]]


async def test_username_taken_across_accounts_and_case(client, api_key, other_api_key):
    assert (await create(client, api_key)).status_code == 200
    clash = dict(SPEC_PAL, layers={"conferencing": {"username": "ANNA"}})
    response = await create(client, other_api_key, clash)
    assert response.status_code == 400
    assert "choose a different username" in response.json()["error"]
    assert response.json()["field"] == "layers.conferencing.username"
    check = await client.get("/v2/pals/check-username", params={"username": "Anna"}, headers=h(other_api_key))
    assert check.json() == {"available": False, "reason": "Username is already taken."}
    free = await client.get("/v2/pals/check-username", params={"username": "acme-anna"}, headers=h(api_key))
    assert free.json() == {"available": True}


@pytest.mark.parametrize("username", ["a", "-x", "bot7", "Bot12", "has space", "x" * 65])
async def test_username_rules_on_create_and_check(client, api_key, username):
    body = dict(SPEC_PAL, layers={"conferencing": {"username": username}})
    response = await create(client, api_key, body)
    assert response.status_code == 400
    assert response.json()["field"] == "layers.conferencing.username"
    check = await client.get("/v2/pals/check-username", params={"username": username}, headers=h(api_key))
    assert check.json()["available"] is False and check.json()["reason"]


async def test_concurrent_creates_exactly_one_wins(clean_db):
    one, _ = await create_account("one")
    two, _ = await create_account("two")
    results = await asyncio.gather(
        pal_service.create_pal(one.id, dict(SPEC_PAL, layers={"conferencing": {"username": "Anna"}})),
        pal_service.create_pal(two.id, dict(SPEC_PAL, layers={"conferencing": {"username": "anna"}})),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, dict)]
    losers = [r for r in results if isinstance(r, Exception)]
    assert len(winners) == 1 and len(losers) == 1
    assert "choose a different username" in str(losers[0])


async def test_default_face_required_with_conferencing(client, api_key):
    body = {k: v for k, v in SPEC_PAL.items() if k != "default_face_id"}
    response = await create(client, api_key, body)
    assert response.status_code == 400
    assert response.json()["field"] == "default_face_id"
    body = dict(SPEC_PAL, default_face_id="rdoesnotexist")
    response = await create(client, api_key, body)
    assert response.status_code == 400 and "does not exist" in response.json()["error"]
    # Without the conferencing layer no face is needed.
    plain = {"pal_name": "Plain", "system_prompt": "hi", "pipeline_mode": "full"}
    assert (await create(client, api_key, plain)).status_code == 200


async def test_spec_patch_examples(client, api_key):
    plain = {"pal_name": "Anna", "system_prompt": "x", "pipeline_mode": "full", "default_face_id": FACE}
    pal_id = (await create(client, api_key, plain)).json()["pal_id"]
    add = [{"op": "add", "path": "/layers/conferencing/username", "value": "anna"}]
    response = await client.patch(f"/v2/pals/{pal_id}", json=add, headers=h(api_key))
    assert response.status_code == 200, response.text
    assert response.json()["conferencing_email"] == "anna@tavusinvite.com"
    replace = [{"op": "replace", "path": "/layers/conferencing/allowlist", "value": ["alex@acme.com", ".*@acme\\.com"]}]
    response = await client.patch(f"/v2/pals/{pal_id}", json=replace, headers=h(api_key))
    assert response.status_code == 200, response.text
    assert response.json()["layers"]["conferencing"]["allowlist"] == ["alex@acme.com", ".*@acme\\.com"]


async def test_failed_patch_changes_nothing(client, api_key):
    pal_id = (await create(client, api_key)).json()["pal_id"]
    before = (await client.get(f"/v2/pals/{pal_id}", headers=h(api_key))).json()
    ops = [
        {"op": "replace", "path": "/pal_name", "value": "Changed"},
        {"op": "test", "path": "/pipeline_mode", "value": "not-this"},
    ]
    response = await client.patch(f"/v2/pals/{pal_id}", json=ops, headers=h(api_key))
    assert response.status_code == 400 and response.json()["field"] == "body[1]"
    bad_result = [{"op": "replace", "path": "/layers/conferencing/allowlist", "value": ["("]}]
    assert (await client.patch(f"/v2/pals/{pal_id}", json=bad_result, headers=h(api_key))).status_code == 400
    assert (await client.get(f"/v2/pals/{pal_id}", headers=h(api_key))).json() == before


async def test_rename_remove_and_delete_free_the_username(client, api_key, other_api_key):
    pal_id = (await create(client, api_key)).json()["pal_id"]
    rename = [{"op": "replace", "path": "/layers/conferencing/username", "value": "anna2"}]
    assert (await client.patch(f"/v2/pals/{pal_id}", json=rename, headers=h(api_key))).json()["conferencing_email"] == "anna2@tavusinvite.com"
    assert (await create(client, other_api_key)).status_code == 200  # "anna" is free again
    remove = [{"op": "remove", "path": "/layers/conferencing"}]
    response = await client.patch(f"/v2/pals/{pal_id}", json=remove, headers=h(api_key))
    assert response.json()["conferencing_email"] is None
    check = await client.get("/v2/pals/check-username", params={"username": "anna2"}, headers=h(api_key))
    assert check.json() == {"available": True}
    assert (await client.delete(f"/v2/pals/{pal_id}", headers=h(api_key))).status_code == 204
    assert (await client.get(f"/v2/pals/{pal_id}", headers=h(api_key))).status_code == 404


async def test_tenant_isolation(client, api_key, other_api_key):
    pal_id = (await create(client, api_key)).json()["pal_id"]
    for method in ("get", "delete"):
        response = await getattr(client, method)(f"/v2/pals/{pal_id}", headers=h(other_api_key))
        assert response.status_code == 404
        assert response.json()["error"] == f"PAL {pal_id!r} not found."
    missing = await client.get("/v2/pals/pdoesnotexist", headers=h(other_api_key))
    assert missing.json()["error"] == "PAL 'pdoesnotexist' not found."  # same wording: existence not revealed
    patch = await client.patch(f"/v2/pals/{pal_id}", json=[{"op": "replace", "path": "/pal_name", "value": "x"}], headers=h(other_api_key))
    assert patch.status_code == 404
    assert (await client.get("/v2/pals", headers=h(other_api_key))).json()["data"] == []


async def test_auth_required(client, api_key):
    assert (await client.get("/v2/pals")).status_code == 401
    assert (await client.get("/v2/pals", headers=h("nope"))).status_code == 401
    assert (await client.get("/v2/faces", headers=h("nope"))).status_code == 401


async def test_faces_listed(client, api_key):
    faces = (await client.get("/v2/faces", headers=h(api_key))).json()["data"]
    assert FACE in [f["face_id"] for f in faces]


@pytest.mark.parametrize(
    "content, status",
    [
        (b"{not json", 400),
        (b"[1,2", 400),
        (json.dumps({"pal_name": 5}).encode(), 400),
        (json.dumps([1, 2]).encode(), 400),
        (json.dumps({"pal_name": "x", "pipeline_mode": "warp"}).encode(), 400),
        (json.dumps({"pal_name": "x", "layers": {"conferencing": "anna"}}).encode(), 400),
        (json.dumps({"pal_name": "x", "surprise": 1}).encode(), 400),
        (b"{" + b'"pal_name": "' + b"x" * 2_000_000 + b'"}', 413),
    ],
)
async def test_bad_create_bodies_are_4xx(client, api_key, content, status):
    response = await client.post("/v2/pals", content=content, headers={**h(api_key), "content-type": "application/json"})
    assert response.status_code == status, response.text
    assert "error" in response.json() and "Traceback" not in response.text


@pytest.mark.parametrize(
    "ops",
    [
        {"op": "add"},
        [{"op": "frobnicate", "path": "/pal_name"}],
        [{"op": "replace", "path": "/nope/deeper", "value": 1}],
        [{"op": "replace", "path": "/pal_name"}],
        [{"op": "move", "from": "/pal_name", "path": "/pal_name/x"}],
        [{"op": "replace", "path": 5, "value": 1}],
        [],
        ["string"],
    ],
)
async def test_bad_patches_are_400(client, api_key, ops):
    pal_id = (await create(client, api_key)).json()["pal_id"]
    response = await client.patch(f"/v2/pals/{pal_id}", json=ops, headers=h(api_key))
    assert response.status_code == 400, response.text


GQL_PAL = """query($id: ID!) { pal(palId: $id) { palId palName conferencingEmail layers } }"""
GQL_CREATE = """mutation($input: CreatePalInput!) { createPal(input: $input) { palId conferencingEmail } }"""


async def test_graphql_create_query_patch_delete(client, api_key, other_api_key):
    created = await graphql(client, api_key, GQL_CREATE, input={
        "palName": "Anna", "defaultFaceId": FACE, "layers": {"conferencing": {"username": "acme-anna", "allowlist": [".*@acme\\.com"]}},
    })
    pal_id = created["data"]["createPal"]["palId"]
    assert created["data"]["createPal"]["conferencingEmail"] == "acme-anna@tavusinvite.com"
    # The same PAL through REST: both APIs share one service.
    rest = (await client.get(f"/v2/pals/{pal_id}", headers=h(api_key))).json()
    assert rest["conferencing_email"] == "acme-anna@tavusinvite.com"
    got = await graphql(client, api_key, GQL_PAL, id=pal_id)
    assert got["data"]["pal"]["palName"] == "Anna"
    patched = await graphql(client, api_key, "mutation($id: ID!, $ops: JSON!) { patchPal(palId: $id, operations: $ops) { palName } }",
                            id=pal_id, ops=[{"op": "replace", "path": "/pal_name", "value": "Ann"}])
    assert patched["data"]["patchPal"]["palName"] == "Ann"
    hidden = await graphql(client, other_api_key, GQL_PAL, id=pal_id)
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    check = await graphql(client, other_api_key, 'query { checkUsername(username: "ACME-anna") { available reason } }')
    assert check["data"]["checkUsername"] == {"available": False, "reason": "Username is already taken."}
    faces = await graphql(client, api_key, "query { faces { faceId } }")
    assert FACE in [f["faceId"] for f in faces["data"]["faces"]]
    deleted = await graphql(client, api_key, 'mutation($id: ID!) { deletePal(palId: $id) }', id=pal_id)
    assert deleted["data"]["deletePal"] is True
    assert (await graphql(client, api_key, "query { pals { nodes { palId } } }"))["data"]["pals"]["nodes"] == []


async def test_graphql_errors_have_codes_and_no_tracebacks(client, api_key):
    # No key: refused before the document is parsed, with a 401 (app/graphql/transport.py).
    unauth = await client.post("/graphql", json={"query": "query { pals { nodes { palId } } }"})
    assert unauth.status_code == 401
    assert unauth.json() == {"errors": [{"message": "Missing API key: send it in the x-api-key header.",
                                         "extensions": {"code": "UNAUTHENTICATED"}}]}
    bad = await graphql(client, api_key, GQL_CREATE, input={"palName": "X", "layers": {"conferencing": {"username": "bot1"}}})
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert bad["errors"][0]["extensions"]["field"] == "layers.conferencing.username"
    bad_patch = await graphql(client, api_key, "mutation { patchPal(palId: \"pnope\", operations: 5) { palId } }")
    assert bad_patch["errors"][0]["extensions"]["code"] in {"NOT_FOUND", "BAD_USER_INPUT"}
    syntax = await client.post("/graphql", json={"query": "query {"}, headers=h(api_key))
    assert syntax.status_code in (200, 400) and "Traceback" not in syntax.text


async def test_graphiql_served(client):
    response = await client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200 and "graphiql" in response.text.lower()


def test_schema_file_matches_code():
    from app.graphql.schema import schema

    committed = (Path(__file__).resolve().parents[2] / "schema.graphql").read_text()
    assert committed == schema.as_str() + "\n", "schema.graphql drifted: run `make schema`"


async def test_graphql_logs_client_mistakes_as_one_line_and_faults_with_a_traceback(
        client, api_key, caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    missing = await graphql(client, api_key, GQL_PAL, id="pnope")
    invalid = await graphql(client, api_key, "query { noSuchField }")
    unauthenticated = (await client.post("/graphql", json={"query": "query { pals { nodes { palId } } }"})).json()
    assert [r["errors"][0]["extensions"]["code"] for r in (missing, invalid, unauthenticated)] == [
        "NOT_FOUND", "GRAPHQL_VALIDATION_FAILED", "UNAUTHENTICATED"]
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert any("NOT_FOUND" in r.getMessage() and "pnope" in r.getMessage() for r in caplog.records)

    async def broken(account_id: int, **_) -> list:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pal_service, "list_pals", broken)
    caplog.clear()
    fault = await graphql(client, api_key, "query { pals { nodes { palId } } }")
    assert fault["errors"][0] == {**fault["errors"][0], "message": "Unexpected error.",
                                  "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info and "disk on fire" in str(errors[0].exc_info[1])


async def test_nul_characters_are_a_clear_400_on_both_apis(client, api_key):
    headers = {"x-api-key": api_key}
    pal = (await client.post("/v2/pals", json=SPEC_PAL, headers=headers)).json()
    named = await client.post("/v2/pals", json={**SPEC_PAL, "pal_name": "An\x00na"}, headers=headers)
    assert named.status_code == 400 and named.json()["field"] == "pal_name"
    nested = await client.patch(f"/v2/pals/{pal['pal_id']}", headers=headers,
                                json=[{"op": "add", "path": "/layers/notes", "value": {"k": "\x00"}}])
    assert nested.status_code == 400 and "NUL" in nested.json()["error"]
    assert (await client.get("/v2/pals/p%00x", headers=headers)).status_code == 400
    face = await client.post("/v2/faces", headers=headers, files={"name": (None, "Da\x00na")})
    assert face.status_code == 400 and face.json()["field"] == "name"
    gql = await graphql(client, api_key, GQL_PAL, id="p\x00")
    assert gql["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    # Nothing stored changed, and the server keeps serving.
    again = (await client.get(f"/v2/pals/{pal['pal_id']}", headers=headers)).json()
    assert again["pal_name"] == "Anna" and "notes" not in again["layers"]
