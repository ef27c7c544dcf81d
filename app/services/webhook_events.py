"""Turning PAL events into webhook deliveries: the one place webhooks are enqueued.

record_event (app/services/events.py) calls enqueue_for_event for every PAL event, in the
transaction that stores the event; transcripts (app/services/transcripts.py) call
enqueue_transcript for the opt-in `conversation.transcript` type. Both insert one
`webhook` row of the outbox (app/services/deliveries.py) per subscribed endpoint of the
PAL's account, ordered per (endpoint, PAL).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.domain import webhooks as rules
from app.services import deliveries
from app.services.rows import json_value
from app.tables import Delivery, Join

KIND = "webhook"


def order_key(endpoint_pk: int, pal_pk: int) -> str:
    return f"wh:{endpoint_pk}:{pal_pk}"


@dataclass(frozen=True)
class Prepared:
    """What record_event needs to know of an event with a public webhook type, read in one query."""

    pal_id: str
    event_type: str
    endpoints: list[int]  # enabled endpoints of the PAL's account that take it; may be empty


async def _subscribers(pal_pk: int, event_type: str) -> tuple[str, list[int]] | None:
    """The PAL's public id and its account's enabled endpoints that take `event_type`."""
    rows = await Delivery.raw(
        "SELECT p.pal_id, w.id, w.event_types FROM pals p "
        "LEFT JOIN webhook_endpoints w ON w.account = p.account AND w.enabled "
        "WHERE p.id = {} ORDER BY w.id", pal_pk)
    if not rows:
        return None
    return rows[0]["pal_id"], [r["id"] for r in rows if r["id"] is not None
                               and rules.subscribed(json_value(r["event_types"], []), event_type)]


async def _insert(pal_pk: int, endpoints: list[int], event_type: str, data: dict[str, Any], at: datetime) -> None:
    payload = rules.body(event_type, at, data)
    await Delivery.insert(*(
        Delivery(delivery_id=deliveries.new_delivery_id(), kind=KIND, pal=pal_pk, endpoint=endpoint,
                 order_key=order_key(endpoint, pal_pk), event_type=event_type, body=payload,
                 meta={"pal_id": data["pal_id"]}, status=deliveries.PENDING, attempts=0, next_attempt_at=at,
                 give_up_at=at + rules.GIVE_UP_AFTER, created_at=at)
        for endpoint in endpoints))
    await deliveries.notify()


async def _with_conversation(data: dict[str, Any]) -> dict[str, Any]:
    """Join events name the conversation too, when the join belongs to one (API ids)."""
    join_id = data.get("join_id")
    if "conversation_id" in data or not isinstance(join_id, int):
        return data
    row = await Join.select(Join.conversation.conversation_id.as_alias("cid")).where(Join.id == join_id).first()
    return {**data, "conversation_id": row["cid"] if row else None}


async def prepare(pal_pk: int, kind: str) -> Prepared | None:
    """The public type and subscribed endpoints of an event about to be recorded (and the PAL's
    public id, read with them); None when the kind is not sent as a webhook."""
    event_type = rules.public_type(kind)
    if event_type is None:
        return None
    found = await _subscribers(pal_pk, event_type)
    return Prepared(found[0], event_type, found[1]) if found else None


async def enqueue_for_event(pal_pk: int, prepared: Prepared, payload: dict[str, Any], at: datetime) -> None:
    """One delivery per endpoint from prepare(), in the caller's transaction."""
    data = rules.event_data(prepared.pal_id, payload)
    if prepared.event_type.startswith("join."):
        data = await _with_conversation(data)
    await _insert(pal_pk, prepared.endpoints, prepared.event_type, data, at)


async def enqueue_transcript(conversation_pk: int, entry: dict[str, Any], at: datetime) -> int:
    """`conversation.transcript` for one stored entry, to the endpoints that opted in."""
    rows = await Delivery.raw(
        "SELECT w.id, p.id AS pal_pk, p.pal_id, c.conversation_id FROM conversations c "
        "JOIN pals p ON p.id = c.pal JOIN webhook_endpoints w ON w.account = p.account "
        "WHERE c.id = {} AND w.enabled AND w.event_types @> {}::jsonb ORDER BY w.id",
        conversation_pk, json.dumps([rules.TRANSCRIPT]))
    if not rows:
        return 0
    data = {"pal_id": rows[0]["pal_id"], "conversation_id": rows[0]["conversation_id"],
            "entry_id": entry["id"], "kind": entry["kind"], "speaker": entry["speaker"], "text": entry["text"],
            "at": entry["at"], "self": entry["self"]}
    await _insert(rows[0]["pal_pk"], [r["id"] for r in rows], rules.TRANSCRIPT, data, at)
    return len(rows)
