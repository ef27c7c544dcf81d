"""PAL management: the one place both APIs create, read, patch and delete PALs."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import asyncpg

from app.config import get_settings
from app.domain.errors import NotFound, QuotaExceeded, ValidationFailed
from app.domain.ids import new_public_id
from app.domain.paging import Page, decode_cursor, encode_cursor, page_of, page_size
from app.domain.pal_document import (
    EDITABLE_FIELDS, ValidPal, apply_patch, shown_layers, split_secrets, validate_document,
)
from app.domain.timefmt import iso_z
from app.domain.usernames import (
    TAKEN_DETAIL,
    TAKEN_MESSAGE,
    USERNAME_PATTERN,
    email_address,
    username_problem,
)
from app.secret_box import seal, unseal_or_empty
from app.services.faces import get_visible_face
from app.services.rows import fetch_row, json_value
from app.tables import Pal


def conferencing_email(row: dict[str, Any]) -> str | None:
    if not row.get("username"):
        return None
    return email_address(row["username"], row["email_domain"])


def pal_view(row: dict[str, Any]) -> dict[str, Any]:
    """The PAL as both APIs show it."""
    return {
        "pal_id": row["pal_id"],
        "pal_name": row["pal_name"],
        "system_prompt": row["system_prompt"],
        "pipeline_mode": row["pipeline_mode"],
        "default_face_id": row["default_face_id"],
        "layers": json_value(row["layers"], {}),
        "conferencing_email": conferencing_email(row),
        "created_at": iso_z(row["created_at"]),
        "updated_at": iso_z(row["updated_at"]),
    }


def _document(row: dict[str, Any]) -> dict[str, Any]:
    doc = {name: row[name] for name in EDITABLE_FIELDS}
    doc["layers"] = json_value(doc["layers"], {})
    return doc


def _columns(valid: ValidPal, stored_secrets: str | None = None) -> dict[Any, Any]:
    """The row's columns; API keys in the layers move, sealed, to `secrets` (the layers keep
    only `api_key_set`), and a layer written without a key keeps the one stored before."""
    layers, secrets = split_secrets(valid.layers, unseal_or_empty(stored_secrets) if stored_secrets else {})
    return {
        Pal.pal_name: valid.pal_name,
        Pal.system_prompt: valid.system_prompt,
        Pal.pipeline_mode: valid.pipeline_mode,
        Pal.default_face_id: valid.default_face_id,
        Pal.layers: shown_layers(layers, set(secrets)),
        Pal.secrets: seal(secrets),
        Pal.username: valid.username,
        Pal.email_domain: get_settings().email_domain if valid.username else None,
        Pal.allowlist: valid.allowlist,
    }


def _is_username_clash(exc: asyncpg.UniqueViolationError) -> bool:
    return "username" in (exc.constraint_name or "")


async def _check_face(account_id: int, valid: ValidPal) -> None:
    if valid.default_face_id is not None:
        await get_visible_face(account_id, valid.default_face_id)


# Key space of the advisory lock that serialises PAL creation per account (the quota count).
_PAL_QUOTA_LOCK = 0x5041_4C51  # "PALQ"


async def _check_pal_quota(account_id: int) -> None:
    limit = get_settings().max_pals_per_account
    if await Pal.count().where(Pal.account == account_id) >= limit:
        raise QuotaExceeded(f"This account already has {limit} PALs, its quota (MAX_PALS_PER_ACCOUNT); "
                            "delete one first.", quota="MAX_PALS_PER_ACCOUNT")


async def create_pal(account_id: int, document: object) -> dict[str, Any]:
    valid = validate_document(document, max_layers_bytes=get_settings().max_layers_bytes)
    await _check_face(account_id, valid)
    now = datetime.now(timezone.utc)
    values = {col._meta.name: value for col, value in _columns(valid).items()}
    try:
        async with Pal._meta.db.transaction():
            # Count and insert under one lock per account, so concurrent creates cannot overshoot.
            await Pal.raw("SELECT pg_advisory_xact_lock({}, {})", _PAL_QUOTA_LOCK, account_id)
            await _check_pal_quota(account_id)
            rows = await Pal.insert(
                Pal(pal_id=new_public_id("p"), account=account_id, created_at=now, updated_at=now, **values)
            ).returning(*Pal.all_columns())
    except asyncpg.UniqueViolationError as exc:
        if _is_username_clash(exc):
            raise ValidationFailed(TAKEN_DETAIL, field="layers.conferencing.username") from None
        raise
    return pal_view(rows[0])


# Every read of one PAL (both APIs, every request) comes through here: a fixed statement.
_OWNED_ROW_SQL = f"SELECT * FROM {Pal._meta.tablename} WHERE pal_id = $1 AND account = $2 LIMIT 1"


async def _owned_row(account_id: int, pal_id: str) -> dict[str, Any]:
    row = await fetch_row(Pal, _OWNED_ROW_SQL, pal_id, account_id)
    if row is None:
        # Same answer whether the PAL is someone else's or does not exist.
        raise NotFound(f"PAL {pal_id!r} not found.", field="pal_id")
    return row


async def owned_pal_pk(account_id: int, pal_id: str) -> int:
    """The internal key of a PAL the account owns (404 otherwise)."""
    return (await _owned_row(account_id, pal_id))["id"]


async def get_pal(account_id: int, pal_id: str) -> dict[str, Any]:
    return pal_view(await _owned_row(account_id, pal_id))


async def list_pals(account_id: int, *, first: object = None, after: object = None,
                    names: tuple[str, str] = ("first", "after")) -> Page[dict[str, Any]]:
    """A page of the account's PALs, oldest first (`names`: the caller's words for size and cursor)."""
    size = page_size(first, field=names[0])
    key = decode_cursor(after, "pals", (int,), field=names[1])
    where = Pal.account == account_id
    if key is not None:
        where &= Pal.id > key[0]
    rows = await Pal.select().where(where).order_by(Pal.id).limit(size + 1)
    return page_of(rows, size, lambda r: encode_cursor("pals", r["id"])).map(pal_view)


async def count_pals(account_id: int) -> int:
    return await Pal.count().where(Pal.account == account_id)


async def patch_pal(account_id: int, pal_id: str, operations: object) -> dict[str, Any]:
    """Apply a JSON Patch; the result is validated whole, and a failure changes nothing."""
    row = await _owned_row(account_id, pal_id)
    valid = validate_document(apply_patch(_document(row), operations),
                              max_layers_bytes=get_settings().max_layers_bytes)
    await _check_face(account_id, valid)
    values = _columns(valid, row["secrets"])
    values[Pal.updated_at] = datetime.now(timezone.utc)
    try:
        rows = await Pal.update(values).where(Pal.id == row["id"]).returning(*Pal.all_columns())
    except asyncpg.UniqueViolationError as exc:
        if _is_username_clash(exc):
            raise ValidationFailed(TAKEN_DETAIL, field="layers.conferencing.username") from None
        raise
    if not rows:
        raise NotFound(f"PAL {pal_id!r} not found.", field="pal_id")
    return pal_view(rows[0])


async def delete_pal(account_id: int, pal_id: str) -> None:
    row = await _owned_row(account_id, pal_id)
    await Pal.delete().where(Pal.id == row["id"])


async def check_username(username: str) -> dict[str, Any]:
    """The spec's availability answer: {"available": bool, "reason"?: str}."""
    problem = username_problem(username)
    if problem:
        return {"available": False, "reason": problem}
    taken = await Pal.exists().where(
        (Pal.email_domain == get_settings().email_domain) & (Pal.username == username.lower())
    )
    if taken:
        return {"available": False, "reason": TAKEN_MESSAGE}
    return {"available": True}


async def find_pal_by_address(address: str) -> dict[str, Any] | None:
    """The PAL whose conferencing email is `address` (case-insensitive), if any."""
    local, _, domain = address.strip().lower().rpartition("@")
    if USERNAME_PATTERN.match(local) is None or "\x00" in domain:
        return None  # no PAL can have it; also keeps NUL and other junk away from the query
    return await Pal.select().where((Pal.username == local) & (Pal.email_domain == domain)).first()
