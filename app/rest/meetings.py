"""REST views of what a PAL was invited to and the joins planned for it."""

from __future__ import annotations

from typing import Any

from litestar import Controller, get
from litestar.di import Provide

from app.clock import utcnow
from app.rest.common import current_account
from app.services.accounts import AccountRef
from app.services.joins import get_join, joins_for_pal
from app.services.meetings import meetings_for_pal
from app.services.pals import owned_pal_pk


class PalActivityController(Controller):
    path = "/v2/pals/{pal_id:str}"
    tags = ["PALs"]
    dependencies = {"account": Provide(current_account)}

    @get("/meetings", summary="Invitations the PAL received, with decision and occurrences")
    async def meetings(self, account: AccountRef, pal_id: str) -> dict[str, Any]:
        items = await meetings_for_pal(await owned_pal_pk(account.id, pal_id), utcnow())
        return {"data": items, "total_count": len(items)}

    @get("/joins", summary="Planned, running and finished Meet joins")
    async def joins(self, account: AccountRef, pal_id: str) -> dict[str, Any]:
        items = await joins_for_pal(await owned_pal_pk(account.id, pal_id))
        return {"data": items, "total_count": len(items)}


class JoinController(Controller):
    path = "/v2/joins"
    tags = ["Joins"]
    dependencies = {"account": Provide(current_account)}

    @get("/{join_id:int}", summary="One join with its status history")
    async def get(self, account: AccountRef, join_id: int) -> dict[str, Any]:
        return await get_join(account.id, join_id)
