"""REST /v2/pals and /v2/faces, mirroring the spec's curl examples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from litestar import Controller, delete, get, patch, post
from litestar.datastructures import UploadFile
from litestar.di import Provide
from litestar.enums import RequestEncodingType
from litestar.params import Body

from app.domain.face_media import MAX_AUDIO_BYTES, MAX_VIDEO_BYTES

from app.services import faces as face_service
from app.services import pals as pal_service
from app.services.accounts import AccountRef
from app.rest.common import REST_PAGE_NAMES, PageCursor, PageLimit, binary_form_field_handler, current_account, listing
from app.rest.openapi import (
    JSON_PATCH_SCHEMA,
    PAL_DOCUMENT_SCHEMA,
    SECURITY,
    FaceList,
    FaceView,
    PalList,
    PalView,
    UsernameAvailability,
    error_responses,
)

# The handlers take `Any` so that the services validate (and word the errors); the schemas
# only tell the OpenAPI document what is accepted.
PalDocument = Annotated[Any, Body(description="The PAL document", schema_extra=PAL_DOCUMENT_SCHEMA)]
PalPatch = Annotated[Any, Body(description="RFC 6902 JSON Patch operations", schema_extra=JSON_PATCH_SCHEMA)]


class PalController(Controller):
    path = "/v2/pals"
    tags = ["PALs"]
    dependencies = {"account": Provide(current_account)}
    security = SECURITY

    @post("/", status_code=200, summary="Create a PAL", responses=error_responses(400, 401, 403, 408, 413))
    async def create(self, account: AccountRef, data: PalDocument) -> PalView:
        return await pal_service.create_pal(account.id, data)  # type: ignore[return-value]

    @get("/", summary="List the account's PALs, oldest first, a page at a time",
         responses=error_responses(400, 401))
    async def list(self, account: AccountRef, limit: PageLimit = None, cursor: PageCursor = None) -> PalList:
        page = await pal_service.list_pals(account.id, first=limit, after=cursor, names=REST_PAGE_NAMES)
        return listing(page, await pal_service.count_pals(account.id))

    @get("/check-username", summary="Check conferencing username availability",
         responses=error_responses(400, 401))
    async def check_username(self, account: AccountRef, username: str) -> UsernameAvailability:
        return await pal_service.check_username(username)  # type: ignore[return-value]

    @get("/{pal_id:str}", summary="Get a PAL", responses=error_responses(400, 401, 404))
    async def get(self, account: AccountRef, pal_id: str) -> PalView:
        return await pal_service.get_pal(account.id, pal_id)  # type: ignore[return-value]

    @patch("/{pal_id:str}", summary="Patch a PAL with RFC 6902 JSON Patch",
           responses=error_responses(400, 401, 403, 404, 408, 413))
    async def patch(self, account: AccountRef, pal_id: str, data: PalPatch) -> PalView:
        return await pal_service.patch_pal(account.id, pal_id, data)  # type: ignore[return-value]

    @delete("/{pal_id:str}", summary="Delete a PAL", status_code=204, responses=error_responses(400, 401, 404))
    async def delete(self, account: AccountRef, pal_id: str) -> None:
        await pal_service.delete_pal(account.id, pal_id)


@dataclass
class FaceUpload:
    """multipart/form-data: name, optional espeak-ng voice, optional .y4m video and .wav audio."""

    name: str
    voice: str | None = None
    video: UploadFile | None = None
    audio: UploadFile | None = None


class FaceController(Controller):
    path = "/v2/faces"
    tags = ["Faces"]
    dependencies = {"account": Provide(current_account)}
    security = SECURITY

    @get("/", summary="List faces visible to the account", responses=error_responses(401))
    async def list(self, account: AccountRef) -> FaceList:
        items = await face_service.list_faces(account.id)
        return {"data": items, "total_count": len(items)}  # type: ignore[typeddict-item]

    @post("/", status_code=200, summary="Create a face, uploading its video and/or voice",
          request_max_body_size=MAX_VIDEO_BYTES + MAX_AUDIO_BYTES + 65536,
          exception_handlers={UnicodeDecodeError: binary_form_field_handler},
          responses=error_responses(400, 401, 403, 408, 413))
    async def create(
        self, account: AccountRef, data: Annotated[FaceUpload, Body(media_type=RequestEncodingType.MULTI_PART)]
    ) -> FaceView:
        video = await data.video.read() if data.video else None
        audio = await data.audio.read() if data.audio else None
        return await face_service.create_face(  # type: ignore[return-value]
            account.id, name=data.name, voice=data.voice, video=video, audio=audio)

    @delete("/{face_id:str}", status_code=204, summary="Delete one of the account's faces",
            responses=error_responses(400, 401, 404, 409))
    async def delete(self, account: AccountRef, face_id: str) -> None:
        await face_service.delete_face(account.id, face_id)
