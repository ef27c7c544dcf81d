"""GraphQL types and resolvers for PALs and faces; thin calls into app.services."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import strawberry
from strawberry import UNSET
from strawberry.scalars import JSON

from app.domain.paging import DEFAULT_PAGE, MAX_PAGE
from app.graphql.activity import Join, Meeting
from app.graphql.context import Info
from app.graphql.enums import PipelineMode
from app.graphql.events import PalEvent
from app.graphql.paging import Connection
from app.graphql.scalars import DateTime
from app.services import faces as face_service
from app.services import pals as pal_service


@strawberry.type
class Face:
    face_id: strawberry.ID
    name: str
    voice: str
    stock: bool
    video: str = strawberry.field(description="'uploaded' or 'generated'")
    audio: str = strawberry.field(description="'uploaded' or 'generated'")

    @classmethod
    def from_view(cls, view: dict[str, Any]) -> "Face":
        return cls(**{name: view[name] for name in ("face_id", "name", "voice", "stock", "video", "audio")})


def _layer(layers: object, name: str) -> dict[str, Any] | None:
    value = layers.get(name) if isinstance(layers, dict) else None
    return value if isinstance(value, dict) else None


def _text(layer: dict[str, Any], name: str) -> str | None:
    value = layer.get(name)
    return value if isinstance(value, str) else None


@strawberry.type(description="The PAL's meeting identity: its address, and who may invite it.")
class Conferencing:
    username: str | None
    email: str | None = strawberry.field(description="<username>@<email domain>: where invitations go.")
    allowlist: list[str] = strawberry.field(description="Exact addresses or RE2 expressions; empty admits anyone.")


@strawberry.type(description="Where the PAL's bot streams the meeting to (layers.realtime).")
class RealtimeLayer:
    websocket_url: str | None


@strawberry.type(description="The language model the PAL thinks with (layers.llm); the key is never shown.")
class LlmLayer:
    model: str | None
    base_url: str | None
    api_key_set: bool = strawberry.field(description="Whether an API key is stored (the key itself is never sent).")


@strawberry.type(description="The voice the PAL speaks with (layers.tts); the key is never shown.")
class TtsLayer:
    provider: str | None
    voice: str | None
    model: str | None
    base_url: str | None
    api_key_set: bool = strawberry.field(description="Whether an API key is stored (the key itself is never sent).")


@strawberry.type
class Pal:
    pal_id: strawberry.ID
    pal_name: str
    system_prompt: str
    pipeline_mode: PipelineMode
    default_face_id: strawberry.ID | None
    layers: JSON = strawberry.field(description="The layers as stored (for JSON Patch); the typed fields below "
                                                "read the same data.")
    conferencing_email: str | None
    created_at: DateTime
    updated_at: DateTime
    account_id: strawberry.Private[int]

    @classmethod
    def from_view(cls, view: dict[str, Any], account_id: int) -> "Pal":
        fields = {name: view[name] for name in cls.__annotations__ if name != "account_id"}
        return cls(account_id=account_id, **fields)

    @strawberry.field(description="layers.conferencing, typed; null when the PAL has no meeting identity.")
    def conferencing(self) -> Conferencing | None:
        layer = _layer(self.layers, "conferencing")
        if layer is None:
            return None
        allowlist = layer.get("allowlist")
        return Conferencing(username=_text(layer, "username"), email=self.conferencing_email,
                            allowlist=[a for a in allowlist if isinstance(a, str)] if isinstance(allowlist, list) else [])

    @strawberry.field(description="layers.realtime, typed; null when not set.")
    def realtime(self) -> RealtimeLayer | None:
        layer = _layer(self.layers, "realtime")
        return None if layer is None else RealtimeLayer(websocket_url=_text(layer, "websocket_url"))

    @strawberry.field(description="layers.llm, typed; null when not set.")
    def llm(self) -> LlmLayer | None:
        layer = _layer(self.layers, "llm")
        if layer is None:
            return None
        return LlmLayer(model=_text(layer, "model"), base_url=_text(layer, "base_url"),
                        api_key_set=bool(layer.get("api_key_set")))

    @strawberry.field(description="layers.tts, typed; null when not set.")
    def tts(self) -> TtsLayer | None:
        layer = _layer(self.layers, "tts")
        if layer is None:
            return None
        return TtsLayer(provider=_text(layer, "provider"), voice=_text(layer, "voice"), model=_text(layer, "model"),
                        base_url=_text(layer, "base_url"), api_key_set=bool(layer.get("api_key_set")))

    @strawberry.field(description=f"Invitations this PAL received, newest first, with their occurrences; "
                                  f"`first` 1-{MAX_PAGE} (default {DEFAULT_PAGE}).")
    async def meetings(self, info: Info, first: int | None = None, after: str | None = None) -> Connection[Meeting]:
        page = await info.context.loaders().meetings.load((self.account_id, self.pal_id, first, after))
        return Connection.of(page, Meeting.from_view)

    @strawberry.field(description=f"Planned, running and finished joins, newest first; with `upcoming`, only "
                                  f"scheduled ones, soonest first. `first` 1-{MAX_PAGE} (default {DEFAULT_PAGE}).")
    async def joins(self, info: Info, first: int | None = None, after: str | None = None,
                    upcoming: bool = False) -> Connection[Join]:
        page = await info.context.loaders().joins.load((self.account_id, self.pal_id, first, after, upcoming))
        return Connection.of(page, Join.from_view)

    @strawberry.field(description=f"The event log, oldest first (newest first with `newestFirst`: the recent "
                                  f"log); `first` 1-{MAX_PAGE} (default {DEFAULT_PAGE}).")
    async def events(self, info: Info, first: int | None = None, after: str | None = None,
                     newest_first: bool = False) -> Connection[PalEvent]:
        page = await info.context.loaders().events.load((self.account_id, self.pal_id, first, after, newest_first))
        return Connection.of(page, PalEvent.from_view)


@strawberry.type
class UsernameAvailability:
    available: bool
    reason: str | None = None


@strawberry.input
class CreatePalInput:
    pal_name: str
    system_prompt: str = ""
    pipeline_mode: PipelineMode = PipelineMode("full")  # type: ignore[call-arg]
    default_face_id: strawberry.ID | None = None
    layers: JSON | None = None


@strawberry.input(description="layers.conferencing: set what is given, keep the rest.")
class ConferencingInput:
    username: str | None = UNSET
    allowlist: list[str] | None = UNSET


@strawberry.input(description="layers.realtime: set what is given, keep the rest.")
class RealtimeInput:
    websocket_url: str | None = UNSET


@strawberry.input(description="The fields to change; omitted ones keep their value, null clears an optional one.")
class UpdatePalInput:
    pal_name: str | None = UNSET
    system_prompt: str | None = UNSET
    pipeline_mode: PipelineMode | None = UNSET
    default_face_id: strawberry.ID | None = UNSET
    conferencing: ConferencingInput | None = UNSET
    realtime: RealtimeInput | None = UNSET


def _set(path: str, value: Any) -> dict[str, Any]:
    return {"op": "add", "path": path, "value": str(value) if isinstance(value, StrEnum) else value}


def update_operations(update: UpdatePalInput) -> list[dict[str, Any]]:
    """The typed update as JSON Patch, so both mutations share one validation (pal_document)."""
    ops = [_set(f"/{name}", getattr(update, name))
           for name in ("pal_name", "system_prompt", "pipeline_mode", "default_face_id")
           if getattr(update, name) is not UNSET]
    for layer, names in (("conferencing", ("username", "allowlist")), ("realtime", ("websocket_url",))):
        given = getattr(update, layer)
        if given is UNSET:
            continue
        if given is None:  # null: the whole layer goes
            ops.append(_set(f"/layers/{layer}", None))
            continue
        ops += [_set(f"/layers/{layer}/{name}", getattr(given, name)) for name in names
                if getattr(given, name) is not UNSET]
    return ops


async def pal(info: Info, pal_id: strawberry.ID) -> Pal:
    account = await info.context.account()
    return Pal.from_view(await pal_service.get_pal(account.id, pal_id), account.id)


async def pals(info: Info, first: int | None = None, after: str | None = None) -> Connection[Pal]:
    """The account's PALs, oldest first; `first` 1-200 (default 50)."""
    account = await info.context.account()
    return Connection.of(await pal_service.list_pals(account.id, first=first, after=after),
                         lambda view: Pal.from_view(view, account.id))


async def faces(info: Info) -> list[Face]:
    account = await info.context.account()
    return [Face.from_view(v) for v in await face_service.list_faces(account.id)]


async def create_face(info: Info, name: str, voice: str | None = None) -> Face:
    """A face with the drawn likeness and the greeting spoken in `voice`; upload media over REST."""
    account = await info.context.account()
    return Face.from_view(await face_service.create_face(account.id, name=name, voice=voice))


async def delete_face(info: Info, face_id: strawberry.ID) -> bool:
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
        "pipeline_mode": str(input.pipeline_mode),
        "default_face_id": input.default_face_id,
        "layers": input.layers or {},
    }
    return Pal.from_view(await pal_service.create_pal(account.id, document), account.id)


async def patch_pal(info: Info, pal_id: strawberry.ID, operations: JSON) -> Pal:
    """RFC 6902 JSON Patch on the PAL document, as PATCH /v2/pals/{id}."""
    account = await info.context.account()
    return Pal.from_view(await pal_service.patch_pal(account.id, pal_id, operations), account.id)


async def update_pal(info: Info, pal_id: strawberry.ID, input: UpdatePalInput) -> Pal:
    """Change the given fields; the same rules as patchPal (a failure changes nothing)."""
    account = await info.context.account()
    return Pal.from_view(await pal_service.patch_pal(account.id, pal_id, update_operations(input)), account.id)


async def delete_pal(info: Info, pal_id: strawberry.ID) -> bool:
    account = await info.context.account()
    await pal_service.delete_pal(account.id, pal_id)
    return True
