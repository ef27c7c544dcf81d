"""REST /v2/conversations: the spec's "Join a Google Meet via API"."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get, post
from litestar import get as get_route  # `get` is also a handler of the controller below
from litestar.di import Provide
from litestar.params import Body, Parameter

from app.clock import utcnow
from app.rest.common import PageCursor, current_account
from app.rest.openapi import (
    CONVERSATION_REQUEST_SCHEMA, SECURITY, TEXT_REQUEST_SCHEMA, CommandAccepted, ConversationView, NotesView, TranscriptView,
    error_responses,
)
from app.services import conversations as conversation_service
from app.services.accounts import AccountRef

ConversationRequest = Annotated[Any, Body(description="{pal_id, face_id?, meeting_url}",
                                          schema_extra=CONVERSATION_REQUEST_SCHEMA)]
TextRequest = Annotated[Any, Body(description="{text}", schema_extra=TEXT_REQUEST_SCHEMA)]


class ConversationController(Controller):
    path = "/v2/conversations"
    tags = ["Conversations"]
    dependencies = {"account": Provide(current_account)}
    security = SECURITY

    @post("/", status_code=200, summary="Send a PAL into a Google Meet now",
          responses=error_responses(400, 401, 404, 408, 409, 413))
    async def create(self, account: AccountRef, data: ConversationRequest) -> ConversationView:
        return await conversation_service.create_conversation(  # type: ignore[return-value]
            account.id, data, now=utcnow())

    @get("/{conversation_id:str}", summary="Live status of a conversation", responses=error_responses(400, 401, 404))
    async def get(self, account: AccountRef, conversation_id: str) -> ConversationView:
        return await conversation_service.get_conversation(account.id, conversation_id)  # type: ignore[return-value]

    @post("/{conversation_id:str}/end", status_code=200, summary="Make the PAL leave the meeting",
          responses=error_responses(400, 401, 404))
    async def end(self, account: AccountRef, conversation_id: str) -> ConversationView:
        return await conversation_service.end_conversation(  # type: ignore[return-value]
            account.id, conversation_id, now=utcnow())

    @get_route("/{conversation_id:str}/transcript", summary="What was said and written in the meeting",
         description="Final captions (`speech`), chat messages (`chat`) and what the PAL said (`self`), "
                     "in order. Page with `cursor` (the `next_cursor` of the previous page), or with "
                     "`after` (the last `id` seen). `limit` and `first` are the same bound.",
         responses=error_responses(400, 401, 404))
    async def transcript(
        self, account: AccountRef, conversation_id: str,
        after: Annotated[int | None, Parameter(ge=0, le=2**31 - 1, description="An entry id: entries after it.")] = None,
        first: Annotated[int | None, Parameter(ge=1, le=500, description="At most this many entries (500).")] = None,
        limit: Annotated[int | None, Parameter(ge=1, le=500, description="At most this many entries (500).")] = None,
        cursor: PageCursor = None,
    ) -> TranscriptView:
        return await conversation_service.transcript(  # type: ignore[return-value]
            account.id, conversation_id, after=after, first=limit if limit is not None else first, cursor=cursor)

    @get_route("/{conversation_id:str}/notes", summary="The meeting's notes",
               description="Written by a `full` PAL when it leaves: summary, decisions, action items with "
                           "owners. `status` is `none`, `writing`, `ready` or `failed` (with `error`).",
               responses=error_responses(400, 401, 404))
    async def notes(self, account: AccountRef, conversation_id: str) -> NotesView:
        return await conversation_service.notes(account.id, conversation_id)  # type: ignore[return-value]

    @post("/{conversation_id:str}/say", status_code=202, summary="Have the PAL say something in the meeting",
          description="Spoken with the face's voice after what is queued. 409 when the bot is not in the call.",
          responses=error_responses(400, 401, 404, 408, 409, 413))
    async def say(self, account: AccountRef, conversation_id: str, data: TextRequest) -> CommandAccepted:
        return await conversation_service.send_command(  # type: ignore[return-value]
            account.id, conversation_id, "say", data)

    @post("/{conversation_id:str}/chat", status_code=202, summary="Have the PAL write in the meeting's chat",
          description="409 when the bot is not in the call.",
          responses=error_responses(400, 401, 404, 408, 409, 413))
    async def chat(self, account: AccountRef, conversation_id: str, data: TextRequest) -> CommandAccepted:
        return await conversation_service.send_command(  # type: ignore[return-value]
            account.id, conversation_id, "chat", data)
