"""What the owner sees: meetings and joins over REST and GraphQL, from the same services."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from app.services.inbound import store_message
from app.services.invites import process_inbound
from tests.fixtures import graphql
from tests.invite_factory import meeting

PAL = "acme-anna@tavusinvite.com"


async def test_meetings_and_joins_visible_on_both_apis(client, api_key, other_api_key, redis_queue):
    body = {"pal_name": "Anna", "default_face_id": "r90bbd427f71",
            "layers": {"conferencing": {"username": "acme-anna", "allowlist": ["alex@acme.com"]}}}
    pal_id = (await client.post("/v2/pals", json=body, headers={"x-api-key": api_key})).json()["pal_id"]
    now = datetime.now(timezone.utc)
    for organizer, link in (("alex@acme.com", "https://meet.google.com/abc-defg-hij"),
                            ("alex@acme.com", "https://us02web.zoom.us/j/1?pwd=z"),
                            ("eve@elsewhere.org", "https://meet.google.com/abc-defg-hij")):
        _, message = meeting(start_in=timedelta(days=1), pal_address=PAL, organizer=organizer, link=link, now=now)
        pk = await store_message(message.as_bytes(), envelope_from=organizer, recipients=[PAL], source="smtp", now=now)
        await process_inbound(pk, now=now)

    meetings = (await client.get(f"/v2/pals/{pal_id}/meetings", headers={"x-api-key": api_key})).json()["data"]
    decisions = sorted((m["decision"], m["platform"]) for m in meetings)
    assert decisions == [("accepted", "google_meet"), ("declined", "zoom"), ("rejected", "google_meet")]
    rejected = next(m for m in meetings if m["decision"] == "rejected")
    assert rejected["reason"] == "organizer is not on the PAL's allowlist"
    accepted = next(m for m in meetings if m["decision"] == "accepted")
    assert len(accepted["occurrences"]) == 1

    joins = (await client.get(f"/v2/pals/{pal_id}/joins", headers={"x-api-key": api_key})).json()["data"]
    assert [j["status"] for j in joins] == ["scheduled"]
    join_id = joins[0]["id"]
    one = (await client.get(f"/v2/joins/{join_id}", headers={"x-api-key": api_key})).json()
    assert [h["status"] for h in one["history"]] == ["scheduled"]
    # A join says which meeting it belongs to.
    assert (one["event_id"], one["uid"], one["summary"]) == (accepted["event_id"], accepted["uid"], "Weekly sync")
    assert (joins[0]["event_id"], joins[0]["summary"]) == (accepted["event_id"], "Weekly sync")

    data = await graphql(client, api_key, """query($id: ID!, $join: ID!) {
        pal(palId: $id) { meetings { nodes { decision platform reason occurrences { startAt meetingUrl } } }
                          joins { nodes { id status joinAt meeting { eventId uid summary } } } }
        join(id: $join) { status history { status } meeting { eventId uid summary } } }""", id=pal_id, join=join_id)
    assert "errors" not in data, data
    gql_meetings = data["data"]["pal"]["meetings"]["nodes"]
    # Enums travel as names: the closed sets are typed (app/graphql/enums.py).
    assert sorted((m["decision"], m["platform"]) for m in gql_meetings) == [
        ("ACCEPTED", "GOOGLE_MEET"), ("DECLINED", "ZOOM"), ("REJECTED", "GOOGLE_MEET")]
    gql_joins = data["data"]["pal"]["joins"]["nodes"]
    assert gql_joins[0]["joinAt"] == joins[0]["join_at"] and gql_joins[0]["status"] == "SCHEDULED"
    assert data["data"]["join"]["history"] == [{"status": "SCHEDULED"}]
    ref = {"eventId": str(accepted["event_id"]), "uid": accepted["uid"], "summary": "Weekly sync"}
    assert data["data"]["join"]["meeting"] == ref and gql_joins[0]["meeting"] == ref

    # Another account sees none of it.
    assert (await client.get(f"/v2/pals/{pal_id}/meetings", headers={"x-api-key": other_api_key})).status_code == 404
    assert (await client.get(f"/v2/joins/{join_id}", headers={"x-api-key": other_api_key})).status_code == 404
    hidden = await graphql(client, other_api_key, "query($j: ID!) { join(id: $j) { status } }", j=join_id)
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize("join_id", ["37095140262606016", "0", "-1"])
async def test_join_ids_no_row_can_have_are_404(client, api_key, join_id):
    response = await client.get(f"/v2/joins/{join_id}", headers={"x-api-key": api_key})
    assert response.status_code == 404, response.text
    assert response.json()["code"] == "NOT_FOUND"
