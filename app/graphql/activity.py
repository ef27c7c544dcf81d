"""GraphQL types for what PALs do: meetings (invitations), joins and API conversations."""

from __future__ import annotations

from typing import Any

import strawberry

from app.clock import utcnow
from app.graphql.context import Info
from app.services import conversations as conversation_service
from app.services.joins import get_join


def _build(cls, data: dict[str, Any]):
    return cls(**{name: data.get(name) for name in cls.__annotations__})


@strawberry.type
class Occurrence:
    recurrence_id: str | None
    start_at: str
    end_at: str
    meeting_url: str | None
    platform: str | None


@strawberry.type(description="An occurrence that could be joined but gets no join, and why.")
class UnplannedOccurrence:
    recurrence_id: str | None
    start_at: str
    reason: str


@strawberry.type
class Meeting:
    event_id: int
    uid: str
    summary: str
    organizer: str
    meeting_url: str | None
    platform: str | None
    decision: str
    reason: str | None
    authenticated: bool
    sequence: int
    cancelled: bool
    timezone_problems: list[str]
    occurrences: list[Occurrence]
    unplanned: list[UnplannedOccurrence]
    updated_at: str

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "Meeting":
        data = dict(view, occurrences=[_build(Occurrence, o) for o in view["occurrences"]],
                    unplanned=[_build(UnplannedOccurrence, u) for u in view["unplanned"]])
        return _build(cls, data)


@strawberry.type
class StatusChange:
    status: str
    reason: str | None
    at: str


@strawberry.type(description="The calendar event a join was planned for.")
class MeetingRef:
    event_id: int
    uid: str
    summary: str


@strawberry.type
class Join:
    id: int
    meeting: MeetingRef | None = strawberry.field(
        description="The invitation this join belongs to; null for a join dispatched by the API.")
    recurrence_id: str | None
    conversation_id: str | None = strawberry.field(
        description="The conversation of its bot run (transcript, live stream); null until it is dispatched.")
    meeting_url: str
    start_at: str
    end_at: str | None
    join_at: str
    status: str
    reason: str | None
    plan_version: int
    updated_at: str
    history: list[StatusChange] | None = None

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "Join":
        history = [_build(StatusChange, h) for h in view["history"]] if "history" in view else None
        meeting = _build(MeetingRef, view) if view.get("event_id") is not None else None
        return _build(cls, dict(view, history=history, meeting=meeting))


@strawberry.type(description="An action item of the meeting's notes.")
class ActionItem:
    owner: str
    task: str


@strawberry.type(description="The meeting's notes, written by a full PAL when it leaves.")
class MeetingNotes:
    status: str = strawberry.field(description="none, writing, ready or failed.")
    summary: str | None
    decisions: list[str]
    action_items: list[ActionItem]
    text: str | None = strawberry.field(description="The notes as the LLM wrote them.")
    error: str | None
    created_at: str | None

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "MeetingNotes":
        return cls(status=view["status"], summary=view["summary"], decisions=list(view["decisions"]),
                   action_items=[ActionItem(owner=a["owner"], task=a["task"]) for a in view["action_items"]],
                   text=view["text"], error=view["error"], created_at=view["created_at"])


@strawberry.type
class Conversation:
    conversation_id: str
    pal_id: str
    face_id: str
    meeting_url: str
    status: str
    reason: str | None
    join_id: int | None
    created_at: str

    @strawberry.field(description="The meeting's notes (summary, decisions, action items).")
    async def notes(self, info: Info) -> MeetingNotes:
        account = await info.context.account()
        return MeetingNotes.from_view(await conversation_service.notes(account.id, self.conversation_id))


@strawberry.type(description="One line of a conversation's transcript.")
class TranscriptEntry:
    id: int | None = strawberry.field(description="The stored entry's id (a cursor); null for a live line "
                                                  "not read from storage.")
    kind: str = strawberry.field(description="speech (a final caption or the PAL's own words) or chat.")
    speaker: str
    text: str
    at: str | None
    is_self: bool = strawberry.field(name="self", description="Said or written by the PAL itself.")

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "TranscriptEntry":
        return cls(id=view.get("id"), kind=view["kind"], speaker=view["speaker"], text=view["text"],
                   at=view.get("at"), is_self=bool(view.get("self")))


@strawberry.type
class Transcript:
    conversation_id: str
    entries: list[TranscriptEntry]
    has_more: bool


@strawberry.type(description="A say or chat command handed to the PAL's bot.")
class CommandAccepted:
    conversation_id: str
    type: str
    text: str


async def join(info: Info, id: int) -> Join:
    account = await info.context.account()
    return Join.from_view(await get_join(account.id, id))


async def conversation(info: Info, conversation_id: str) -> Conversation:
    account = await info.context.account()
    return _build(Conversation, await conversation_service.get_conversation(account.id, conversation_id))


async def create_conversation(info: Info, pal_id: str, meeting_url: str, face_id: str | None = None) -> Conversation:
    account = await info.context.account()
    data = {"pal_id": pal_id, "meeting_url": meeting_url, "face_id": face_id}
    return _build(Conversation, await conversation_service.create_conversation(account.id, data, now=utcnow()))


async def end_conversation(info: Info, conversation_id: str) -> Conversation:
    account = await info.context.account()
    return _build(Conversation, await conversation_service.end_conversation(account.id, conversation_id, now=utcnow()))


async def transcript(info: Info, conversation_id: str, after: int | None = None,
                     first: int | None = None) -> Transcript:
    """What was said and written in the meeting, in order; page with `after` (an entry id)."""
    account = await info.context.account()
    view = await conversation_service.transcript(account.id, conversation_id, after=after, first=first)
    return Transcript(conversation_id=view["conversation_id"], has_more=view["has_more"],
                      entries=[TranscriptEntry.from_view(e) for e in view["entries"]])


async def say(info: Info, conversation_id: str, text: str) -> CommandAccepted:
    """The PAL says `text` (1..2000 characters) in the meeting; CONFLICT when its bot is not in the call."""
    account = await info.context.account()
    return _build(CommandAccepted, await conversation_service.send_command(
        account.id, conversation_id, "say", {"text": text}))


async def send_chat(info: Info, conversation_id: str, text: str) -> CommandAccepted:
    """The PAL writes `text` (1..2000 characters) in the meeting's chat; CONFLICT when not in the call."""
    account = await info.context.account()
    return _build(CommandAccepted, await conversation_service.send_command(
        account.id, conversation_id, "chat", {"text": text}))
