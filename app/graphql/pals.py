"""GraphQL types and resolvers for PALs and faces; thin calls into app.services."""

from __future__ import annotations

from typing import Any

import strawberry
from strawberry.scalars import JSON

from app.clock import utcnow
from app.graphql.activity import Join, Meeting
from app.graphql.context import Info
from app.graphql.events import EventPage, page_of_events
from app.services import faces as face_service
from app.services.joins import joins_for_pal
from app.services.meetings import meetings_for_pal
from app.services import pals as pal_service


@strawberry.type
class Face:
    face_id: str
    name: str
    voice: str
    stock: bool
    video: str = strawberry.field(description="'uploaded' or 'generated'")
    audio: str = strawberry.field(description="'uploaded' or 'generated'")

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "Face":
        return cls(**{name: view[name] for name in ("face_id", "name", "voice", "stock", "video", "audio")})


@strawberry.type
class Pal:
    pal_id: str
    pal_name: str
    system_prompt: str
    pipeline_mode: str
    default_face_id: str | None
    layers: JSON
    conferencing_email: str | None
    created_at: str
    updated_at: str
    account_id: strawberry.Private[int]

    @classmethod
    def from_view(cls, view: dict[str, Any], account_id: int) -> "Pal":
        fields = {name: view[name] for name in cls.__annotations__ if name != "account_id"}
        return cls(account_id=account_id, **fields)

    @strawberry.field(description="Invitations this PAL received, newest first, with their occurrences.")
    async def meetings(self) -> list[Meeting]:
        pk = await pal_service.owned_pal_pk(self.account_id, self.pal_id)
        return [Meeting.from_view(v) for v in await meetings_for_pal(pk, utcnow())]

    @strawberry.field(description="Planned, running and finished Meet joins, newest first.")
    async def joins(self) -> list[Join]:
        pk = await pal_service.owned_pal_pk(self.account_id, self.pal_id)
        return [Join.from_view(v) for v in await joins_for_pal(pk)]

    @strawberry.field(description="The event log, oldest first: events with id > `after`, at most `first` (1-200).")
    async def events(self, after: int | None = None, first: int = 50) -> EventPage:
        pk = await pal_service.owned_pal_pk(self.account_id, self.pal_id)
        return await page_of_events(pk, self.pal_id, after, first)


@strawberry.type
class UsernameAvailability:
    available: bool
    reason: str | None = None


@strawberry.input
class CreatePalInput:
    pal_name: str
    system_prompt: str = ""
    pipeline_mode: str = "full"
    default_face_id: str | None = None
    layers: JSON | None = None


async def pal(info: Info, pal_id: str) -> Pal:
    account = await info.context.account()
    return Pal.from_view(await pal_service.get_pal(account.id, pal_id), account.id)


async def pals(info: Info) -> list[Pal]:
    account = await info.context.account()
    return [Pal.from_view(v, account.id) for v in await pal_service.list_pals(account.id)]


async def faces(info: Info) -> list[Face]:
    account = await info.context.account()
    return [Face.from_view(v) for v in await face_service.list_faces(account.id)]


async def create_face(info: Info, name: str, voice: str | None = None) -> Face:
    """A face with the drawn likeness and the greeting spoken in `voice`; upload media over REST."""
    account = await info.context.account()
    return Face.from_view(await face_service.create_face(account.id, name=name, voice=voice))


async def delete_face(info: Info, face_id: str) -> bool:
    account = await info.context.account()
    await face_service.delete_face(account.id, face_id)
    return True


async def check_username(info: Info, username: str) -> UsernameAvailability:
    await info.context.account()
    return UsernameAvailability(**await pal_service.check_username(username))


async def create_pal(info: Info, input: CreatePalInput) -> Pal:
    account = await info.context.account()
    document: dict[str, Any] = {
        "pal_name": input.pal_name,
        "system_prompt": input.system_prompt,
        "pipeline_mode": input.pipeline_mode,
        "default_face_id": input.default_face_id,
        "layers": input.layers or {},
    }
    return Pal.from_view(await pal_service.create_pal(account.id, document), account.id)


async def patch_pal(info: Info, pal_id: str, operations: JSON) -> Pal:
    account = await info.context.account()
    return Pal.from_view(await pal_service.patch_pal(account.id, pal_id, operations), account.id)


async def delete_pal(info: Info, pal_id: str) -> bool:
    account = await info.context.account()
    await pal_service.delete_pal(account.id, pal_id)
    return True
