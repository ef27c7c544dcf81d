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
from app.rest.common import binary_form_field_handler, current_account


class PalController(Controller):
    path = "/v2/pals"
    tags = ["PALs"]
    dependencies = {"account": Provide(current_account)}

    @post("/", status_code=200, summary="Create a PAL")
    async def create(self, account: AccountRef, data: Any = Body(description="The PAL document")) -> dict[str, Any]:
        return await pal_service.create_pal(account.id, data)

    @get("/", summary="List the account's PALs")
    async def list(self, account: AccountRef) -> dict[str, Any]:
        items = await pal_service.list_pals(account.id)
        return {"data": items, "total_count": len(items)}

    @get("/check-username", summary="Check conferencing username availability")
    async def check_username(self, account: AccountRef, username: str) -> dict[str, Any]:
        return await pal_service.check_username(username)

    @get("/{pal_id:str}", summary="Get a PAL")
    async def get(self, account: AccountRef, pal_id: str) -> dict[str, Any]:
        return await pal_service.get_pal(account.id, pal_id)

    @patch("/{pal_id:str}", summary="Patch a PAL with RFC 6902 JSON Patch")
    async def patch(
        self, account: AccountRef, pal_id: str, data: Any = Body(description="JSON Patch operations")
    ) -> dict[str, Any]:
        return await pal_service.patch_pal(account.id, pal_id, data)

    @delete("/{pal_id:str}", summary="Delete a PAL", status_code=204)
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

    @get("/", summary="List faces visible to the account")
    async def list(self, account: AccountRef) -> dict[str, Any]:
        items = await face_service.list_faces(account.id)
        return {"data": items, "total_count": len(items)}

    @post("/", status_code=200, summary="Create a face, uploading its video and/or voice",
          request_max_body_size=MAX_VIDEO_BYTES + MAX_AUDIO_BYTES + 65536,
          exception_handlers={UnicodeDecodeError: binary_form_field_handler})
    async def create(
        self, account: AccountRef, data: Annotated[FaceUpload, Body(media_type=RequestEncodingType.MULTI_PART)]
    ) -> dict[str, Any]:
        video = await data.video.read() if data.video else None
        audio = await data.audio.read() if data.audio else None
        return await face_service.create_face(account.id, name=data.name, voice=data.voice, video=video, audio=audio)

    @delete("/{face_id:str}", status_code=204, summary="Delete one of the account's faces")
    async def delete(self, account: AccountRef, face_id: str) -> None:
        await face_service.delete_face(account.id, face_id)
