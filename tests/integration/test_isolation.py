"""Tenant isolation: another account's objects look exactly like objects that do not exist.

Every object an account owns (PAL, its meetings, joins and events, faces, conversations),
through every mutating and reading operation of both APIs: the answer to a foreign id must
be the answer to a missing id (same status, same code, same message but for the id), and
the foreign object must be unchanged afterwards. Subscriptions: test_live_status.py.
"""

from __future__ import annotations

import pytest

from app.services.faces import create_face
from app.tables import Face, Join, Pal
from tests.fixtures import graphql

FACE = "r90bbd427f71"
MEET = "https://meet.google.com/iso-late-dxx"
MISSING = {"pal": "p0000000000000000", "face": "r000000000000", "conversation": "c0000000000000000",
           "join": 999999}


@pytest.fixture
async def owned(client, api_key, redis_queue) -> dict:
    """What account A owns: a PAL, a face of its own and a conversation with its join."""
    headers = {"x-api-key": api_key}
    body = {"pal_name": "Anna", "default_face_id": FACE, "layers": {"conferencing": {"username": "iso-anna"}}}
    pal = (await client.post("/v2/pals", json=body, headers=headers)).json()["pal_id"]
    account = (await Pal.select(Pal.account).where(Pal.pal_id == pal).first())["account"]
    face = (await create_face(account, name="Own face", video=None, audio=None))["face_id"]
    conversation = (await client.post("/v2/conversations", json={"pal_id": pal, "meeting_url": MEET},
                                      headers=headers)).json()
    return {"pal": pal, "face": face, "conversation": conversation["conversation_id"],
            "join": conversation["join_id"]}


def _same_but_id(foreign, missing, foreign_id, missing_id) -> None:
    assert foreign == missing or str(foreign).replace(str(foreign_id), "<id>") == \
        str(missing).replace(str(missing_id), "<id>"), (foreign, missing)


REST = [
    ("GET", "/v2/pals/{pal}", None),
    ("PATCH", "/v2/pals/{pal}", [{"op": "replace", "path": "/pal_name", "value": "Mallory"}]),
    ("DELETE", "/v2/pals/{pal}", None),
    ("GET", "/v2/pals/{pal}/meetings", None),
    ("GET", "/v2/pals/{pal}/joins", None),
    ("GET", "/v2/joins/{join}", None),
    ("GET", "/v2/conversations/{conversation}", None),
    ("POST", "/v2/conversations/{conversation}/end", None),
    ("GET", "/v2/conversations/{conversation}/transcript", None),
    ("GET", "/v2/conversations/{conversation}/notes", None),
    ("DELETE", "/v2/faces/{face}", None),
    ("POST", "/v2/conversations", {"pal_id": "{pal}", "meeting_url": "https://meet.google.com/abc-defg-hij"}),
    ("POST", "/v2/conversations", {"pal_id": "{own_pal}", "meeting_url": "https://meet.google.com/abc-defg-hij",
                                   "face_id": "{face}"}),
    ("POST", "/v2/pals", {"pal_name": "M", "default_face_id": "{face}"}),
]


def _fill(value, ids: dict):
    if isinstance(value, str):
        return value.format(**ids)
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    return value


async def _state() -> tuple:
    pals = await Pal.select(Pal.pal_id, Pal.pal_name, Pal.layers, Pal.updated_at).order_by(Pal.id)
    faces = await Face.select(Face.face_id, Face.name).order_by(Face.id)
    joins = await Join.select(Join.id, Join.status, Join.stop_requested).order_by(Join.id)
    return pals, faces, joins


@pytest.mark.parametrize("method, path, body", REST, ids=[f"{m} {p}" for m, p, _ in REST])
async def test_rest_foreign_ids_look_missing(client, api_key, other_api_key, owned, method, path, body):
    own_pal = (await client.post("/v2/pals", json={"pal_name": "Eve", "default_face_id": FACE},
                                 headers={"x-api-key": other_api_key})).json()["pal_id"]
    before = await _state()
    answers = []
    for ids in ({**owned, "own_pal": own_pal}, {**MISSING, "own_pal": own_pal}):
        kwargs = {"json": _fill(body, ids)} if body is not None else {}
        if method == "PATCH":
            kwargs["headers"] = {"content-type": "application/json-patch+json"}
        headers = {"x-api-key": other_api_key, **kwargs.pop("headers", {})}
        response = await client.request(method, _fill(path, ids), headers=headers, **kwargs)
        assert response.status_code in (400, 404), response.text
        answers.append((response.status_code, response.json()))
    which = next((k for k in ("conversation", "join", "face", "pal") if "{" + k + "}" in path + str(body)), "pal")
    _same_but_id(answers[0], answers[1], owned[which], MISSING[which])
    assert await _state() == before  # nothing of A's changed


GRAPHQL = [
    ("query($id: ID!) { pal(palId: $id) { palId } }", "pal"),
    ("query($id: ID!) { pal(palId: $id) { meetings { nodes { uid } } } }", "pal"),
    ("mutation($id: ID!) { patchPal(palId: $id, operations: [{op: \"replace\", path: \"/pal_name\", value: \"M\"}]) { palId } }", "pal"),
    ("mutation($id: ID!) { deletePal(palId: $id) }", "pal"),
    ("query($id: ID!) { join(id: $id) { status } }", "join"),
    ("query($id: ID!) { conversation(conversationId: $id) { status } }", "conversation"),
    ("mutation($id: ID!) { endConversation(conversationId: $id) { status } }", "conversation"),
    ("query($id: ID!) { transcript(conversationId: $id) { pageInfo { hasNextPage } } }", "conversation"),
    ("mutation($id: ID!) { deleteFace(faceId: $id) }", "face"),
    ("mutation($id: ID!) { createConversation(palId: $id, meetingUrl: \"https://meet.google.com/abc-defg-hij\") { status } }", "pal"),
]


@pytest.mark.parametrize("query, kind", GRAPHQL, ids=[q.split("{")[1].split("(")[0].strip() for q, _ in GRAPHQL])
async def test_graphql_foreign_ids_look_missing(client, api_key, other_api_key, owned, query, kind):
    before = await _state()
    answers = []
    for value in (owned[kind], MISSING[kind]):
        data = await graphql(client, other_api_key, query, id=value)
        assert data.get("data") in (None, {}) or all(v is None for v in (data.get("data") or {}).values()), data
        error = data["errors"][0]
        answers.append((error["extensions"]["code"], error["message"]))
    assert answers[0][0] in ("NOT_FOUND", "BAD_USER_INPUT"), answers
    _same_but_id(answers[0], answers[1], owned[kind], MISSING[kind])
    assert await _state() == before
