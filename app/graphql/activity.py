"""GraphQL types for what PALs do: meetings (invitations), joins and API conversations."""

from __future__ import annotations

from typing import Any

import strawberry

from app.clock import utcnow
from app.domain.errors import NotFound
from app.domain.ids import is_serial_id
from app.domain.join_state import reason_code
from app.domain.paging import page_size
from app.graphql.context import Info
from app.graphql.enums import (
    JoinReason, JoinStatus, MeetingDecision, NotesStatus, NotPlannedReason, Platform, TranscriptKind,
)
from app.graphql.paging import Connection, PageInfo
from app.graphql.scalars import DateTime
from app.services import conversations as conversation_service
from app.services.joins import get_join


def _build(cls, data: dict[str, Any]):
    return cls(**{name: data.get(name) for name in cls.__annotations__})


def _with_reason(view: dict[str, Any]) -> dict[str, Any]:
    """A stored reason as the JoinReason code, with the text kept as reason_detail."""
    return {**view, "reason": reason_code(view.get("reason")), "reason_detail": view.get("reason") or None}


def serial_id(value: str, what: str, field: str) -> int:
    """An `ID` argument that names a row by number; anything else is simply not found."""
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10
            and is_serial_id(int(value))):
        raise NotFound(f"{what} {value!r} not found.", field=field)
    return int(value)


REASON_DETAIL = "The stored reason as text (the bot's error message for ERROR); null when there is none."


@strawberry.type
class Occurrence:
    recurrence_id: str | None
    start_at: DateTime
    end_at: DateTime
    meeting_url: str | None
    platform: Platform | None


@strawberry.type(description="An occurrence that could be joined but gets no join, and why.")
class UnplannedOccurrence:
    recurrence_id: str | None
    start_at: DateTime
    reason: NotPlannedReason


@strawberry.type
class Meeting:
    event_id: strawberry.ID
    uid: str
    summary: str
    organizer: str
    meeting_url: str | None
    platform: Platform | None
    decision: MeetingDecision
    reason: str | None = strawberry.field(description=(
        "Why it was declined or rejected, in words for the owner (e.g. \"Zoom is not supported yet\"); "
        "free text, not a closed set."))
    authenticated: bool
    sequence: int
    cancelled: bool
    timezone_problems: list[str]
    occurrences: list[Occurrence]
    unplanned: list[UnplannedOccurrence]
    created_at: DateTime = strawberry.field(description="When the invitation was first received.")
    updated_at: DateTime

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "Meeting":
        data = dict(view, occurrences=[_build(Occurrence, o) for o in view["occurrences"]],
                    unplanned=[_build(UnplannedOccurrence, u) for u in view["unplanned"]])
        return _build(cls, data)


@strawberry.type
class StatusChange:
    status: JoinStatus
    reason: JoinReason | None
    reason_detail: str | None = strawberry.field(description=REASON_DETAIL)
    at: DateTime


@strawberry.type(description="The calendar event a join was planned for.")
class MeetingRef:
    event_id: strawberry.ID
    uid: str
    summary: str


@strawberry.type
class Join:
    id: strawberry.ID
    meeting: MeetingRef | None = strawberry.field(
        description="The invitation this join belongs to; null for a join dispatched by the API.")
    recurrence_id: str | None
    conversation_id: strawberry.ID | None = strawberry.field(
        description="The conversation of its bot run (transcript, live stream); null until it is dispatched.")
    meeting_url: str
    start_at: DateTime
    end_at: DateTime | None
    join_at: DateTime
    status: JoinStatus
    reason: JoinReason | None
    reason_detail: str | None = strawberry.field(description=REASON_DETAIL)
    plan_version: int
    updated_at: DateTime
    preloaded_history: strawberry.Private[list[dict[str, Any]] | None] = None

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "Join":
        meeting = _build(MeetingRef, view) if view.get("event_id") is not None else None
        return _build(cls, dict(_with_reason(view), preloaded_history=view.get("history"), meeting=meeting))

    @strawberry.field(description="Every status the join passed through, oldest first (batched per request).")
    async def history(self, info: Info) -> list[StatusChange]:
        views = self.preloaded_history
        if views is None:
            views = await info.context.loaders().histories.load(int(self.id))
        return [_build(StatusChange, _with_reason(h)) for h in views]


@strawberry.type(description="An action item of the meeting's notes.")
class ActionItem:
    owner: str
    task: str


@strawberry.type(description="The meeting's notes, written by a full PAL when it leaves.")
class MeetingNotes:
    status: NotesStatus
    summary: str | None
    decisions: list[str]
    action_items: list[ActionItem]
    text: str | None = strawberry.field(description="The notes as the LLM wrote them.")
    error: str | None = strawberry.field(description="Why writing them failed (status FAILED).")
    created_at: DateTime | None

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "MeetingNotes":
        return cls(status=view["status"], summary=view["summary"], decisions=list(view["decisions"]),
                   action_items=[ActionItem(owner=a["owner"], task=a["task"]) for a in view["action_items"]],
                   text=view["text"], error=view["error"], created_at=view["created_at"])


@strawberry.type
class Conversation:
    conversation_id: strawberry.ID
    pal_id: strawberry.ID
    face_id: strawberry.ID | None
    meeting_url: str
    status: JoinStatus | None = strawberry.field(description="Its join's status; null if it has no join.")
    reason: JoinReason | None
    reason_detail: str | None = strawberry.field(description=REASON_DETAIL)
    join_id: strawberry.ID | None
    created_at: DateTime

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "Conversation":
        status = view["status"] if view.get("join_id") is not None else None
        return _build(cls, dict(_with_reason(view), status=status))

    @strawberry.field(description="The meeting's notes (summary, decisions, action items).")
    async def notes(self, info: Info) -> MeetingNotes:
        account = await info.context.account()
        return MeetingNotes.from_view(await conversation_service.notes(account.id, self.conversation_id))


@strawberry.type(description="One line of a conversation's transcript.")
class TranscriptEntry:
    id: strawberry.ID | None = strawberry.field(description="The stored entry's id; null for a live line "
                                                            "not read from storage.")
    kind: TranscriptKind = strawberry.field(description="SPEECH (a final caption or the PAL's own words) or CHAT.")
    speaker: str
    text: str
    at: DateTime | None
    is_self: bool = strawberry.field(name="self", description="Said or written by the PAL itself.")

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "TranscriptEntry":
        return cls(id=view.get("id"), kind=view["kind"], speaker=view["speaker"], text=view["text"],
                   at=view.get("at"), is_self=bool(view.get("self")))


@strawberry.type(description="A say or chat command handed to the PAL's bot.")
class CommandAccepted:
    conversation_id: strawberry.ID
    type: str
    text: str


async def join(info: Info, id: strawberry.ID) -> Join:
    account = await info.context.account()
    return Join.from_view(await get_join(account.id, serial_id(id, "Join", "join_id")))


async def conversation(info: Info, conversation_id: strawberry.ID) -> Conversation:
    account = await info.context.account()
    return Conversation.from_view(await conversation_service.get_conversation(account.id, conversation_id))


async def create_conversation(info: Info, pal_id: strawberry.ID, meeting_url: str,
                              face_id: strawberry.ID | None = None) -> Conversation:
    account = await info.context.account()
    data = {"pal_id": pal_id, "meeting_url": meeting_url, "face_id": face_id}
    return Conversation.from_view(await conversation_service.create_conversation(account.id, data, now=utcnow()))


async def end_conversation(info: Info, conversation_id: strawberry.ID) -> Conversation:
    account = await info.context.account()
    return Conversation.from_view(
        await conversation_service.end_conversation(account.id, conversation_id, now=utcnow()))


async def transcript(info: Info, conversation_id: strawberry.ID, first: int | None = None,
                     after: str | None = None) -> Connection[TranscriptEntry]:
    """What was said and written in the meeting, oldest first; `first` 1-200 (default 50), like every list."""
    account = await info.context.account()
    view = await conversation_service.transcript(account.id, conversation_id, first=page_size(first),
                                                 cursor=after, cursor_field="after")
    entries = view["entries"]
    end = conversation_service.transcript_cursor(entries[-1]["id"]) if entries else after
    return Connection(nodes=[TranscriptEntry.from_view(e) for e in entries],
                      page_info=PageInfo(end_cursor=end, has_next_page=view["has_more"]))


async def say(info: Info, conversation_id: strawberry.ID, text: str) -> CommandAccepted:
    """The PAL says `text` (1..2000 characters) in the meeting; CONFLICT when its bot is not in the call."""
    account = await info.context.account()
    return _build(CommandAccepted, await conversation_service.send_command(
        account.id, conversation_id, "say", {"text": text}))


async def send_chat(info: Info, conversation_id: strawberry.ID, text: str) -> CommandAccepted:
    """The PAL writes `text` (1..2000 characters) in the meeting's chat; CONFLICT when not in the call."""
    account = await info.context.account()
    return _build(CommandAccepted, await conversation_service.send_command(
        account.id, conversation_id, "chat", {"text": text}))
