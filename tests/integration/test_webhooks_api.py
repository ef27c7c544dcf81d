"""Webhook endpoints over REST /v2/webhooks and GraphQL: one service, bad input refused with a
clear 4xx / extensions.code, and another account can neither see nor replay your webhooks."""

from __future__ import annotations

import pytest

from app.clock import utcnow
from app.config import reset_settings
from app.services import deliveries
from app.services import pals as pal_service
from app.services.accounts import authenticate
from app.services.events import record_event
from app.tables import Delivery
from tests.fixtures import graphql
from tests.webhook_receiver import Receiver

URL = "https://hooks.example.com/pal?src=1"


def h(key: str) -> dict[str, str]:
    return {"x-api-key": key}


async def test_create_list_get_patch_delete(client, api_key):
    created = await client.post("/v2/webhooks", headers=h(api_key), json={"url": URL})
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) >= {"webhook_id", "url", "event_types", "enabled", "secret", "created_at"}
    assert body["url"] == URL and body["event_types"] == [] and body["enabled"] is True
    assert body["secret"].startswith("whsec_") and body["failing"] is False
    webhook_id = body["webhook_id"]
    got = (await client.get(f"/v2/webhooks/{webhook_id}", headers=h(api_key))).json()
    assert "secret" not in got and got["webhook_id"] == webhook_id  # shown only on create and rotation
    listed = (await client.get("/v2/webhooks", headers=h(api_key))).json()
    assert listed["total_count"] == 1 and "secret" not in listed["data"][0]
    patched = await client.patch(f"/v2/webhooks/{webhook_id}", headers=h(api_key),
                                 json={"event_types": ["join.in_call", "join.left"], "enabled": False})
    assert patched.status_code == 200, patched.text
    assert patched.json()["event_types"] == ["join.in_call", "join.left"] and patched.json()["enabled"] is False
    back = await client.patch(f"/v2/webhooks/{webhook_id}", headers=h(api_key), json={"event_types": None})
    assert back.json()["event_types"] == [] and back.json()["url"] == URL
    rotated = await client.post(f"/v2/webhooks/{webhook_id}/rotate-secret", headers=h(api_key))
    assert rotated.status_code == 200 and rotated.json()["secret"] not in (None, body["secret"])
    deleted = await client.delete(f"/v2/webhooks/{webhook_id}", headers=h(api_key))
    assert deleted.status_code == 204
    assert (await client.get(f"/v2/webhooks/{webhook_id}", headers=h(api_key))).status_code == 404


@pytest.mark.parametrize("payload, field, words", [
    ({"url": "ftp://x.example.com/"}, "url", "http:// or https://"),
    ({"url": "https://user:pw@x.example.com/"}, "url", "credentials"),
    ({"url": "https://x.example.com/" + "a" * 2100}, "url", "at most 2048"),
    ({"url": "https:///nohost"}, "url", "host"),
    ({"url": "https://x.example.com/a b"}, "url", "spaces"),
    ({"url": 7}, "url", "required"),
    ({}, "url", "required"),
    ({"url": URL, "event_types": ["join.teleported"]}, "event_types", "not an event type"),
    ({"url": URL, "event_types": "join.left"}, "event_types", "list"),
    ({"url": URL, "enabled": "yes"}, "enabled", "true or false"),
    ({"url": URL, "secret": "mine"}, "secret", "Unknown field"),
])
async def test_bad_input_is_a_400_naming_the_field(client, api_key, payload, field, words):
    response = await client.post("/v2/webhooks", headers=h(api_key), json=payload)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field and words in response.json()["error"]


async def test_other_bad_requests_are_4xx(client, api_key):
    assert (await client.post("/v2/webhooks", json={"url": URL})).status_code == 401
    assert (await client.post("/v2/webhooks", headers=h(api_key), json=[URL])).status_code == 400
    assert (await client.get("/v2/webhooks/wh_nope", headers=h(api_key))).status_code == 404
    hook = (await client.post("/v2/webhooks", headers=h(api_key), json={"url": URL})).json()
    base = f"/v2/webhooks/{hook['webhook_id']}"
    assert (await client.get(f"{base}/deliveries?limit=0", headers=h(api_key))).status_code == 400
    assert (await client.get(f"{base}/deliveries?status=lost", headers=h(api_key))).status_code == 400
    assert (await client.get(f"{base}/deliveries?before=msg_x", headers=h(api_key))).status_code == 404
    assert (await client.post(f"{base}/deliveries/msg_x/replay", headers=h(api_key))).status_code == 404
    assert (await client.patch(base, headers=h(api_key), json={"url": "javascript:alert(1)"})).status_code == 400


async def test_an_account_holds_at_most_20_webhooks(client, api_key):
    for i in range(20):
        assert (await client.post("/v2/webhooks", headers=h(api_key), json={"url": f"{URL}&n={i}"})).status_code == 201
    over = await client.post("/v2/webhooks", headers=h(api_key), json={"url": URL})
    assert over.status_code == 403 and over.json()["code"] == "QUOTA_EXCEEDED"


async def test_deliveries_listed_and_replayed_over_rest(client, api_key, monkeypatch):
    monkeypatch.setenv("WEBHOOK_ALLOWED_HOSTS", "127.0.0.1")
    reset_settings()
    receiver = await Receiver().start()
    try:
        hook = (await client.post("/v2/webhooks", headers=h(api_key), json={"url": receiver.url})).json()
        receiver.secrets.append(hook["secret"])
        account = await authenticate(api_key)
        pal = await pal_service.create_pal(account.id, {"pal_name": "Anna", "default_face_id": "r90bbd427f71"})
        pal_pk = await pal_service.owned_pal_pk(account.id, pal["pal_id"])
        for n in range(3):
            await record_event(pal_pk, "left", {"join_id": n, "status": "left", "reason": None}, pal_id=pal["pal_id"])
        await deliveries.run_due(utcnow())
        base = f"/v2/webhooks/{hook['webhook_id']}/deliveries"
        page = (await client.get(f"{base}?limit=2", headers=h(api_key))).json()
        assert page["has_more"] is True and [d["body"]["data"]["join_id"] for d in page["data"]] == [2, 1]
        assert all(d["status"] == "sent" and d["event_type"] == "join.left" for d in page["data"])
        assert page["next_cursor"] == page["data"][-1]["delivery_id"]
        rest = (await client.get(f"{base}?cursor={page['next_cursor']}", headers=h(api_key))).json()
        assert [d["body"]["data"]["join_id"] for d in rest["data"]] == [0] and rest["has_more"] is False
        oldest = rest["data"][0]["delivery_id"]
        replay = await client.post(f"{base}/{oldest}/replay", headers=h(api_key))
        assert replay.status_code == 202 and replay.json()["status"] == "pending"
        again = await client.post(f"{base}/{oldest}/replay", headers=h(api_key))
        assert again.status_code == 409 and again.json()["code"] == "CONFLICT"
        await deliveries.run_due(utcnow())
        assert [r.message_id for r in receiver.received].count(oldest) == 2
        assert all(r.verified for r in receiver.received)
    finally:
        await receiver.stop()
        monkeypatch.undo()
        reset_settings()


async def test_another_account_can_neither_see_nor_replay(client, api_key, other_api_key, monkeypatch):
    hook = (await client.post("/v2/webhooks", headers=h(api_key), json={"url": URL})).json()
    account = await authenticate(api_key)
    pal = await pal_service.create_pal(account.id, {"pal_name": "Anna", "default_face_id": "r90bbd427f71"})
    await record_event(await pal_service.owned_pal_pk(account.id, pal["pal_id"]), "left", {"join_id": 1},
                       pal_id=pal["pal_id"])
    delivery_id = (await Delivery.select(Delivery.delivery_id).first())["delivery_id"]
    await Delivery.update({Delivery.status: "failed"}).where(Delivery.delivery_id == delivery_id)
    base = f"/v2/webhooks/{hook['webhook_id']}"
    other = h(other_api_key)
    assert (await client.get("/v2/webhooks", headers=other)).json() == {"data": [], "total_count": 0}
    for method, path in (("GET", base), ("PATCH", base), ("DELETE", base), ("POST", f"{base}/rotate-secret"),
                         ("GET", f"{base}/deliveries"), ("POST", f"{base}/deliveries/{delivery_id}/replay")):
        response = await client.request(method, path, headers=other, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)
    # The other account's own webhook gets nothing of this account's PAL, and cannot reach its delivery.
    mine = (await client.post("/v2/webhooks", headers=other, json={"url": URL})).json()
    response = await client.post(f"/v2/webhooks/{mine['webhook_id']}/deliveries/{delivery_id}/replay", headers=other)
    assert response.status_code == 404
    assert await Delivery.count() == 1
    assert (await Delivery.select(Delivery.status).first())["status"] == "failed"
    gql = await graphql(client, other_api_key, "query($id: ID!) { webhook(webhookId: $id) { url } }",
                        id=hook["webhook_id"])
    assert gql["errors"][0]["extensions"]["code"] == "NOT_FOUND"


CREATE = """mutation($input: CreateWebhookInput!) {
  createWebhook(input: $input) { webhookId url eventTypes enabled secret failing }
}"""


async def test_graphql_manages_the_same_webhooks(client, api_key):
    created = await graphql(client, api_key, CREATE, input={"url": URL, "eventTypes": ["invite.received"]})
    hook = created["data"]["createWebhook"]
    assert hook["secret"].startswith("whsec_") and hook["eventTypes"] == ["invite.received"]
    rest = (await client.get(f"/v2/webhooks/{hook['webhookId']}", headers=h(api_key))).json()
    assert rest["event_types"] == ["invite.received"]
    updated = await graphql(client, api_key, """mutation($id: ID!) {
      updateWebhook(webhookId: $id, input: {enabled: false}) { enabled eventTypes secret } }""", id=hook["webhookId"])
    assert updated["data"]["updateWebhook"] == {"enabled": False, "eventTypes": ["invite.received"], "secret": None}
    rotated = await graphql(client, api_key, "mutation($id: ID!) { rotateWebhookSecret(webhookId: $id) { secret } }",
                            id=hook["webhookId"])
    assert rotated["data"]["rotateWebhookSecret"]["secret"] not in (None, hook["secret"])
    listed = await graphql(client, api_key, "{ webhooks { webhookId secret deliveries { nodes { deliveryId } pageInfo { hasNextPage } } } }")
    assert listed["data"]["webhooks"] == [{"webhookId": hook["webhookId"], "secret": None,
                                           "deliveries": {"nodes": [], "pageInfo": {"hasNextPage": False}}}]
    bad = await graphql(client, api_key, CREATE, input={"url": "ftp://x"})
    assert bad["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "url"}
    page = await graphql(client, api_key, "{ webhooks { deliveries(first: 500) { pageInfo { hasNextPage } } } }")
    assert page["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "first"}
    bad = await graphql(client, api_key, CREATE, input={"url": URL, "eventTypes": ["nope"]})
    assert bad["errors"][0]["extensions"]["field"] == "event_types"
    missing = await graphql(client, api_key, """mutation { replayWebhookDelivery(webhookId: "wh_x", deliveryId: "m") {
      status } }""")
    assert missing["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    unauth = await client.post("/graphql", json={"query": "{ webhooks { url } }"})
    assert unauth.status_code == 401 and unauth.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    deleted = await graphql(client, api_key, "mutation($id: ID!) { deleteWebhook(webhookId: $id) }",
                            id=hook["webhookId"])
    assert deleted["data"]["deleteWebhook"] is True
