"""Accounts and API-key authentication."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from app.config import get_settings
from app.domain.errors import NotFound, Unauthenticated
from app.domain.ids import hash_api_key, is_serial_id, new_api_key
from app.tables import Account


@dataclass(frozen=True)
class AccountRef:
    id: int
    name: str


async def create_account(name: str) -> tuple[AccountRef, str]:
    """A new account and its API key; only the key's hash is stored."""
    key = new_api_key()
    rows = await Account.insert(
        Account(name=name, api_key_hash=hash_api_key(key), created_at=datetime.now(timezone.utc))
    ).returning(Account.id)
    return AccountRef(id=rows[0]["id"], name=name), key


async def rotate_api_key(account_id: int) -> str:
    """Replace an account's API key (e.g. after a leak); returns the new key.

    Each API process may accept the old key for up to AUTH_CACHE_SECONDS more; a
    websocket that authenticated with it is closed (4403) within that time too.
    """
    missing = NotFound(f"No account with id {account_id}.", field="account_id")
    if not is_serial_id(account_id):
        raise missing
    key = new_api_key()
    rows = await Account.update({Account.api_key_hash: hash_api_key(key)}).where(
        Account.id == account_id).returning(Account.id)
    if not rows:
        raise missing
    _auth_cache.clear()  # this process at once; the others when their entries expire
    return key


# Every request authenticates; a short-lived cache of *valid* keys saves a query per
# request (bench/api_bench.py). Unknown keys are never cached. The cache's lifetime is
# AUTH_CACHE_SECONDS (Settings.auth_cache_seconds, default 10 s): it is how long a rotated
# key keeps working in another process, and how soon an open websocket notices.
AUTH_CACHE_SECONDS = 10.0  # the default; `python -m app rotate-key` quotes it
AUTH_CACHE_SIZE = 10_000
_auth_cache: dict[str, tuple[float, AccountRef]] = {}
# One query per key at a time: when a popular key's entry expires, the requests and the
# websockets re-checking it wait for the same lookup instead of each asking PostgreSQL.
_lookups: dict[str, asyncio.Task] = {}


async def authenticate(api_key: str | None) -> AccountRef:
    return (await authenticate_until(api_key))[0]


async def authenticate_until(api_key: str | None) -> tuple[AccountRef, float]:
    """The key's account, and until when (time.monotonic()) this process will trust it unasked."""
    if not api_key:
        raise Unauthenticated("Missing API key: send it in the x-api-key header.")
    key_hash = hash_api_key(api_key)
    cached = _auth_cache.get(key_hash)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1], cached[0]
    row = await _lookup(key_hash)
    if row is None:
        _auth_cache.pop(key_hash, None)
        raise Unauthenticated("Unknown API key.")
    account = AccountRef(id=row["id"], name=row["name"])
    until = time.monotonic() + get_settings().auth_cache_seconds
    if len(_auth_cache) >= AUTH_CACHE_SIZE:
        _auth_cache.clear()
    _auth_cache[key_hash] = (until, account)
    return account, until


async def _lookup(key_hash: str) -> dict | None:
    loop = asyncio.get_running_loop()
    task = _lookups.get(key_hash)
    if task is None or task.get_loop() is not loop:
        task = loop.create_task(_select_account(key_hash))
        _lookups[key_hash] = task
        task.add_done_callback(lambda done: _lookup_done(key_hash, done))
    # shield: one caller giving up (a closed socket) does not cancel the others' lookup
    return await asyncio.shield(task)


async def _select_account(key_hash: str) -> dict | None:
    return await Account.select(Account.id, Account.name).where(Account.api_key_hash == key_hash).first()


def _lookup_done(key_hash: str, task: asyncio.Task) -> None:
    if _lookups.get(key_hash) is task:
        del _lookups[key_hash]
    if not task.cancelled():
        task.exception()  # retrieved here too, in case every caller gave up
