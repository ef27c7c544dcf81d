"""REST /v2/conversations: the spec's "Join a Google Meet via API"."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, get, post
from litestar.di import Provide
from litestar.params import Body

from app.clock import utcnow
from app.rest.common import current_account
from app.rest.openapi import CONVERSATION_REQUEST_SCHEMA, SECURITY, ConversationView, error_responses
from app.services import conversations as conversation_service
from app.services.accounts import AccountRef

ConversationRequest = Annotated[Any, Body(description="{pal_id, face_id?, meeting_url}",
                                          schema_extra=CONVERSATION_REQUEST_SCHEMA)]


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
