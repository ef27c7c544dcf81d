"""GraphQL types for the PAL event log: events and the live snapshot (pages: Pal.events)."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from app.graphql.activity import Join
from app.graphql.enums import PalEventKind
from app.graphql.scalars import DateTime


@strawberry.type(description="One state change in a PAL's meeting life; `id` orders the log.")
class PalEvent:
    id: strawberry.ID = strawberry.field(description="Increasing: the subscription's `after` takes it (as a number).")
    pal_id: strawberry.ID
    kind: PalEventKind
    payload: JSON = strawberry.field(description="The event's data, as stored: its strings are the REST "
                                                 "API's (status \"in_call\", not IN_CALL).")
    created_at: DateTime

    @strawberry.field(description="The join this event is about, if any.")
    def join_id(self) -> strawberry.ID | None:
        value = self.payload.get("join_id") if isinstance(self.payload, dict) else None
        return value if isinstance(value, int) else None  # type: ignore[return-value]

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "PalEvent":
        return cls(id=view["id"], pal_id=view["pal_id"], kind=view["kind"], payload=view["payload"],
                   created_at=view["created_at"])


@strawberry.type(description="The current state from PostgreSQL, sent first on every palEvents subscription.")
class PalSnapshot:
    pal_id: strawberry.ID
    last_event_id: int | None = strawberry.field(description="The newest event id when the snapshot was read.")
    upcoming: list[Join] = strawberry.field(description="Scheduled joins, soonest first.")
    live: list[Join] = strawberry.field(description="Joins in progress: dispatching, joining, waiting_room, in_call.")

    @classmethod
    def from_state(cls, pal_id: str, state: dict[str, Any]) -> "PalSnapshot":
        return cls(pal_id=pal_id, last_event_id=state["last_event_id"],
                   upcoming=[Join.from_view(j) for j in state["upcoming"]],
                   live=[Join.from_view(j) for j in state["live"]])


PalStreamItem = Annotated[PalSnapshot | PalEvent, strawberry.union("PalStreamItem")]
