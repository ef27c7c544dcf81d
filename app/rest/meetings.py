"""REST views of what a PAL was invited to and the joins planned for it."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import Provide
from litestar.params import Parameter

from app.clock import utcnow
from app.rest.common import REST_PAGE_NAMES, PageCursor, PageLimit, current_account, listing
from app.rest.openapi import SECURITY, JoinDetail, JoinList, MeetingList, error_responses
from app.services.accounts import AccountRef
from app.services.joins import count_joins, get_join, joins_pages
from app.services.meetings import count_meetings, meetings_pages
from app.services.pals import owned_pal_pk


class PalActivityController(Controller):
    path = "/v2/pals/{pal_id:str}"
    tags = ["PALs"]
    dependencies = {"account": Provide(current_account)}
    security = SECURITY

    @get("/meetings", summary="Invitations the PAL received, newest first, with decision and occurrences",
         responses=error_responses(400, 401, 404))
    async def meetings(self, account: AccountRef, pal_id: str, limit: PageLimit = None,
                       cursor: PageCursor = None) -> MeetingList:
        pk = await owned_pal_pk(account.id, pal_id)
        pages = await meetings_pages(account.id, [pal_id], utcnow(), first=limit, after=cursor, names=REST_PAGE_NAMES)
        return listing(pages[pal_id], await count_meetings(pk))

    @get("/joins", summary="Planned, running and finished Meet joins, newest first",
         responses=error_responses(400, 401, 404))
    async def joins(self, account: AccountRef, pal_id: str, limit: PageLimit = None, cursor: PageCursor = None,
                    upcoming: Annotated[bool, Parameter(description="Only scheduled joins, soonest first.")] = False,
                    ) -> JoinList:
        pk = await owned_pal_pk(account.id, pal_id)
        pages = await joins_pages(account.id, [pal_id], first=limit, after=cursor, upcoming=upcoming,
                                  names=REST_PAGE_NAMES)
        return listing(pages[pal_id], await count_joins(pk, upcoming=upcoming))


class JoinController(Controller):
    path = "/v2/joins"
    tags = ["Joins"]
    dependencies = {"account": Provide(current_account)}
    security = SECURITY

    @get("/{join_id:int}", summary="One join with its status history", responses=error_responses(400, 401, 404))
    async def get(self, account: AccountRef, join_id: int) -> JoinDetail:
        return await get_join(account.id, join_id)  # type: ignore[return-value]
