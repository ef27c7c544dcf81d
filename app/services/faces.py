"""Faces: the stock catalogue every account sees, plus faces an account owns."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from app.config import get_settings
from app.domain.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed
from app.domain.face_media import check_audio, check_face_fields, check_video
from app.domain.ids import new_public_id
from app.domain.timefmt import iso_z
from app.tables import Face

log = logging.getLogger(__name__)

# (face_id, name, espeak-ng voice). r90bbd427f71 is the id the spec's examples use.
STOCK_FACES: tuple[tuple[str, str, str], ...] = (
    ("r90bbd427f71", "Anna", "en-us+f3"),
    ("r3c1f0a2b9d4", "Ben", "en-gb+m3"),
    ("r7e2d4c6a8f0", "Chloe", "en-us+f2"),
)


async def seed_stock_faces() -> None:
    """Insert missing stock faces; idempotent, so every `migrate` may call it."""
    now = datetime.now(timezone.utc)
    for face_id, name, voice in STOCK_FACES:
        await Face.insert(
            Face(face_id=face_id, owner=None, name=name, voice=voice, created_at=now)
        ).on_conflict(target=Face.face_id, action="DO NOTHING")


def face_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "face_id": row["face_id"],
        "name": row["name"],
        "voice": row["voice"],
        "stock": row["owner"] is None,
        "video": "uploaded" if row["video_path"] else "generated",
        "audio": "uploaded" if row["audio_path"] else "generated",
        "created_at": iso_z(row["created_at"]),
    }


def _visible_to(account_id: int):
    return (Face.owner.is_null()) | (Face.owner == account_id)


async def list_faces(account_id: int) -> list[dict[str, Any]]:
    rows = await Face.select().where(_visible_to(account_id)).order_by(Face.id)
    return [face_view(r) for r in rows]


async def get_visible_face(account_id: int, face_id: str, *, field: str = "default_face_id") -> dict[str, Any]:
    """The face, or a 400 naming `field` when it does not exist or belongs to another account."""
    row = await Face.select().where(_visible_to(account_id) & (Face.face_id == face_id)).first()
    if row is None:
        raise ValidationFailed(f"Face {face_id!r} does not exist.", field=field)
    return row


def _face_dir(face_id: str) -> Path:
    return Path(get_settings().media_dir).resolve() / "faces" / face_id


def _write(path: Path, data: bytes) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)  # atomic: a bot never reads half a file
    return str(path)


# Key space of the advisory lock that serialises face creation per account (the quota checks).
_FACE_QUOTA_LOCK = 0x5041_4C46  # "PALF"


def _stored_bytes(paths: list[str]) -> int:
    total = 0
    for path in paths:
        try:
            total += os.stat(path).st_size
        except OSError:
            pass  # a file removed by hand no longer takes space
    return total


async def _check_face_quotas(account_id: int, *, new_bytes: int, field: str | None) -> None:
    """The account's faces (MAX_FACES_PER_ACCOUNT) and their uploaded media
    (MAX_FACE_MEDIA_BYTES_PER_ACCOUNT, what is stored plus `new_bytes`)."""
    settings = get_settings()
    rows = await Face.select(Face.video_path, Face.audio_path).where(Face.owner == account_id)
    if len(rows) >= settings.max_faces_per_account:
        raise QuotaExceeded(f"This account already has {settings.max_faces_per_account} faces, its quota "
                            "(MAX_FACES_PER_ACCOUNT); delete one first.", quota="MAX_FACES_PER_ACCOUNT")
    if not new_bytes:
        return
    paths = [path for row in rows for path in (row["video_path"], row["audio_path"]) if path]
    used = await asyncio.to_thread(_stored_bytes, paths)
    limit = settings.max_face_media_bytes_per_account
    if used + new_bytes > limit:
        raise QuotaExceeded(
            f"This upload ({new_bytes} bytes) would take the account's face media to {used + new_bytes} bytes; "
            f"the quota is {limit} bytes (MAX_FACE_MEDIA_BYTES_PER_ACCOUNT). Delete a face first.",
            quota="MAX_FACE_MEDIA_BYTES_PER_ACCOUNT", field=field)


async def create_face(account_id: int, *, name: object, voice: object = None,
                      video: bytes | None = None, audio: bytes | None = None) -> dict[str, Any]:
    """An account's own face. Uploaded media is used as is; what is missing is generated
    (the drawn likeness, or the greeting spoken by espeak-ng in `voice`)."""
    name, voice = check_face_fields(name, voice)
    if video is not None:
        check_video(video)
    if audio is not None:
        check_audio(audio)
    new_bytes = len(video or b"") + len(audio or b"")
    field = "video" if video is not None else "audio" if audio is not None else None
    await _check_face_quotas(account_id, new_bytes=new_bytes, field=field)  # refuse before writing anything
    face_id = new_public_id("r")
    folder = _face_dir(face_id)
    try:
        video_path = await asyncio.to_thread(_write, folder / "likeness.y4m", video) if video is not None else None
        audio_path = await asyncio.to_thread(_write, folder / "voice.wav", audio) if audio is not None else None
        async with Face._meta.db.transaction():  # the engine (app.db imports this module)
            # Check again and insert under one lock per account: concurrent uploads cannot overshoot.
            await Face.raw("SELECT pg_advisory_xact_lock({}, {})", _FACE_QUOTA_LOCK, account_id)
            await _check_face_quotas(account_id, new_bytes=new_bytes, field=field)
            rows = await Face.insert(Face(
                face_id=face_id, owner=account_id, name=name, voice=voice, video_path=video_path,
                audio_path=audio_path, created_at=datetime.now(timezone.utc),
            )).returning(*Face.all_columns())
    except BaseException:
        await asyncio.to_thread(shutil.rmtree, folder, True)
        raise
    log.info("account %s created face %s (video %s, audio %s)", account_id, face_id,
             "uploaded" if video_path else "generated", "uploaded" if audio_path else "generated")
    return face_view(rows[0])


async def delete_face(account_id: int, face_id: str) -> None:
    """Delete one of the account's faces; stock faces and faces a PAL still uses stay."""
    from app.tables import Pal

    row = await Face.select().where((Face.face_id == face_id) & (Face.owner == account_id)).first()
    if row is None:
        raise NotFound(f"Face {face_id!r} not found.", field="face_id")
    if await Pal.exists().where((Pal.account == account_id) & (Pal.default_face_id == face_id)):
        raise Conflict(f"Face {face_id!r} is the default face of a PAL; change that PAL first.", field="face_id")
    await Face.delete().where(Face.id == row["id"])
    await asyncio.to_thread(shutil.rmtree, _face_dir(face_id), True)
