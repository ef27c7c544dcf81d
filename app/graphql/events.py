"""GraphQL types for the PAL event log: events, pages of events and the live snapshot."""

from __future__ import annotations

from typing import Annotated, Any

import strawberry
from strawberry.scalars import JSON

from app.domain.errors import ValidationFailed
from app.graphql.activity import Join
from app.services.events import events_page

MAX_PAGE = 200


@strawberry.type(description="One state change in a PAL's meeting life; `id` orders the log.")
class PalEvent:
    id: int
    pal_id: str
    kind: str = strawberry.field(description=(
        "invite_received, invite_accepted, invite_declined, invite_rejected, join_scheduled, "
        "join_rescheduled, join_cancelled, scheduled, dispatching, joining, waiting_room, in_call, "
        "left, failed, reply_sent, reply_failed"))
    payload: JSON
    created_at: str

    @strawberry.field(description="The join this event is about, if any.")
    def join_id(self) -> int | None:
        value = self.payload.get("join_id") if isinstance(self.payload, dict) else None
        return value if isinstance(value, int) else None

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "PalEvent":
        return cls(id=view["id"], pal_id=view["pal_id"], kind=view["kind"], payload=view["payload"],
                   created_at=view["created_at"])


@strawberry.type(description="A page of the event log, oldest first. Pass `endCursor` as `after` for the next page.")
class EventPage:
    items: list[PalEvent]
    end_cursor: int | None
    has_more: bool


@strawberry.type(description="The current state from PostgreSQL, sent first on every palEvents subscription.")
class PalSnapshot:
    pal_id: str
    last_event_id: int | None = strawberry.field(description="The newest event id when the snapshot was read.")
    upcoming: list[Join] = strawberry.field(description="Scheduled joins, soonest first.")
    live: list[Join] = strawberry.field(description="Joins in progress: dispatching, joining, waiting_room, in_call.")

    @classmethod
    def from_state(cls, pal_id: str, state: dict[str, Any]) -> "PalSnapshot":
        return cls(pal_id=pal_id, last_event_id=state["last_event_id"],
                   upcoming=[Join.from_view(j) for j in state["upcoming"]],
                   live=[Join.from_view(j) for j in state["live"]])


PalStreamItem = Annotated[PalSnapshot | PalEvent, strawberry.union("PalStreamItem")]


def check_paging(after: int | None, first: int) -> None:
    if after is not None and after < 0:
        raise ValidationFailed("after must be an event id (0 or more).", field="after")
    if not 1 <= first <= MAX_PAGE:
        raise ValidationFailed(f"first must be between 1 and {MAX_PAGE}.", field="first")


async def page_of_events(pal_pk: int, pal_id: str, after: int | None, first: int) -> EventPage:
    check_paging(after, first)
    views, more = await events_page(pal_pk, pal_id, after=after, first=first)
    items = [PalEvent.from_view(v) for v in views]
    return EventPage(items=items, end_cursor=items[-1].id if items else after, has_more=more)
