"""POST /v2/conversations validation and life cycle (the bot itself: test_meet_bot_e2e.py)."""

from __future__ import annotations

import pytest

from app.tables import Join
from app.keys import ARQ_QUEUE

FACE = "r90bbd427f71"


@pytest.fixture
async def pal_id(client, api_key) -> str:
    body = {"pal_name": "Anna", "default_face_id": FACE, "layers": {"conferencing": {"username": "anna"}}}
    return (await client.post("/v2/pals", json=body, headers={"x-api-key": api_key})).json()["pal_id"]


async def post(client, key, body):
    return await client.post("/v2/conversations", json=body, headers={"x-api-key": key})


@pytest.mark.parametrize(
    "url, fragment",
    [
        ("https://us02web.zoom.us/j/123456789?pwd=abc", "Zoom meetings are not supported yet"),
        ("https://teams.microsoft.com/l/meetup-join/19%3ameeting_x%40thread.v2/0", "Microsoft Teams meetings are not supported yet"),
        ("https://example.org/meeting", "must be a Google Meet link"),
        ("not a url", "must be an https URL"),
        ("", "meeting_url is required"),
        (5, "meeting_url is required"),
    ],
)
async def test_meeting_url_is_validated(client, api_key, pal_id, redis_queue, url, fragment):
    response = await post(client, api_key, {"pal_id": pal_id, "meeting_url": url})
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"] and response.json()["field"] == "meeting_url"
    assert await Join.count() == 0


async def test_unknown_pal_face_and_auth(client, api_key, other_api_key, pal_id, redis_queue):
    url = "https://meet.google.com/xgq-epxn-ccp"
    assert (await post(client, other_api_key, {"pal_id": pal_id, "meeting_url": url})).status_code == 404
    bad_face = await post(client, api_key, {"pal_id": pal_id, "meeting_url": url, "face_id": "rnope"})
    assert bad_face.status_code == 400 and bad_face.json()["field"] == "face_id"
    assert (await client.post("/v2/conversations", json={"pal_id": pal_id, "meeting_url": url})).status_code == 401
    assert (await post(client, api_key, ["not", "an", "object"])).status_code == 400


async def test_dispatch_enqueues_at_once_and_end_cancels(client, api_key, pal_id, redis_queue):
    url = "https://meet.google.com/xgq-epxn-ccp?authuser=0"
    response = await post(client, api_key, {"face_id": FACE, "pal_id": pal_id, "meeting_url": url})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["conversation_id"].startswith("c") and body["status"] == "scheduled"
    assert body["meeting_url"] == "https://meet.google.com/xgq-epxn-ccp"
    queued = await redis_queue.zrange(ARQ_QUEUE, 0, -1)
    assert f"join:{body['join_id']}:v1".encode() in queued
    # A second dispatch to the same Meet while the first is pending is refused.
    again = await post(client, api_key, {"pal_id": pal_id, "meeting_url": url})
    assert again.status_code == 409
    got = await client.get(f"/v2/conversations/{body['conversation_id']}", headers={"x-api-key": api_key})
    assert got.json()["status"] == "scheduled"
    ended = await client.post(f"/v2/conversations/{body['conversation_id']}/end", headers={"x-api-key": api_key})
    assert ended.status_code == 200 and ended.json()["status"] == "cancelled"
    assert (await client.get(f"/v2/conversations/{body['conversation_id']}", headers={"x-api-key": "x"})).status_code == 401
    assert (await client.get("/v2/conversations/cnope", headers={"x-api-key": api_key})).status_code == 404


async def test_graphql_conversation_life_cycle(client, api_key, other_api_key, pal_id, redis_queue):
    from tests.fixtures import graphql

    zoom = await graphql(client, api_key, """mutation($p: ID!) { createConversation(palId: $p,
        meetingUrl: "https://zoom.us/j/123?pwd=x") { conversationId } }""", p=pal_id)
    assert zoom["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "meeting_url"}
    assert "Zoom meetings are not supported yet" in zoom["errors"][0]["message"]
    created = await graphql(client, api_key, """mutation($p: ID!) { createConversation(palId: $p,
        meetingUrl: "https://meet.google.com/xgq-epxn-ccp") { conversationId status joinId } }""", p=pal_id)
    conversation = created["data"]["createConversation"]
    assert conversation["status"] == "SCHEDULED"
    got = await graphql(client, api_key, "query($c: ID!) { conversation(conversationId: $c) { status meetingUrl } }",
                        c=conversation["conversationId"])
    assert got["data"]["conversation"] == {"status": "SCHEDULED", "meetingUrl": "https://meet.google.com/xgq-epxn-ccp"}
    hidden = await graphql(client, other_api_key, "query($c: ID!) { conversation(conversationId: $c) { status } }",
                           c=conversation["conversationId"])
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    ended = await graphql(client, api_key, "mutation($c: ID!) { endConversation(conversationId: $c) { status reason reasonDetail } }",
                          c=conversation["conversationId"])
    assert ended["data"]["endConversation"] == {"status": "CANCELLED", "reason": "ENDED_BY_API",
                                                "reasonDetail": "ended_by_api"}
