"""REST /v2/conversations: the spec's "Join a Google Meet via API"."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get, post
from litestar.di import Provide
from litestar.params import Body

from app.clock import utcnow
from app.rest.common import current_account
from app.services import conversations as conversation_service
from app.services.accounts import AccountRef


class ConversationController(Controller):
    path = "/v2/conversations"
    tags = ["Conversations"]
    dependencies = {"account": Provide(current_account)}

    @post("/", status_code=200, summary="Send a PAL into a Google Meet now")
    async def create(self, account: AccountRef, data: Any = Body(description="{pal_id, face_id?, meeting_url}")) -> dict[str, Any]:
        return await conversation_service.create_conversation(account.id, data, now=utcnow())

    @get("/{conversation_id:str}", summary="Live status of a conversation")
    async def get(self, account: AccountRef, conversation_id: str) -> dict[str, Any]:
        return await conversation_service.get_conversation(account.id, conversation_id)

    @post("/{conversation_id:str}/end", status_code=200, summary="Make the PAL leave the meeting")
    async def end(self, account: AccountRef, conversation_id: str) -> dict[str, Any]:
        return await conversation_service.end_conversation(account.id, conversation_id, now=utcnow())
