"""REST views of what a PAL was invited to and the joins planned for it."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import Provide

from app.clock import utcnow
from app.rest.common import current_account
from app.rest.openapi import SECURITY, JoinDetail, JoinList, MeetingList, error_responses
from app.services.accounts import AccountRef
from app.services.joins import get_join, joins_for_pal
from app.services.meetings import meetings_for_pal
from app.services.pals import owned_pal_pk


class PalActivityController(Controller):
    path = "/v2/pals/{pal_id:str}"
    tags = ["PALs"]
    dependencies = {"account": Provide(current_account)}
    security = SECURITY

    @get("/meetings", summary="Invitations the PAL received, with decision and occurrences",
         responses=error_responses(400, 401, 404))
    async def meetings(self, account: AccountRef, pal_id: str) -> MeetingList:
        items = await meetings_for_pal(await owned_pal_pk(account.id, pal_id), utcnow())
        return {"data": items, "total_count": len(items)}  # type: ignore[typeddict-item]

    @get("/joins", summary="Planned, running and finished Meet joins", responses=error_responses(400, 401, 404))
    async def joins(self, account: AccountRef, pal_id: str) -> JoinList:
        items = await joins_for_pal(await owned_pal_pk(account.id, pal_id))
        return {"data": items, "total_count": len(items)}  # type: ignore[typeddict-item]


class JoinController(Controller):
    path = "/v2/joins"
    tags = ["Joins"]
    dependencies = {"account": Provide(current_account)}
    security = SECURITY

    @get("/{join_id:int}", summary="One join with its status history", responses=error_responses(400, 401, 404))
    async def get(self, account: AccountRef, join_id: int) -> JoinDetail:
        return await get_join(account.id, join_id)  # type: ignore[return-value]
