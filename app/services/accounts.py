"""Accounts and API-key authentication."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

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

    Each API process may accept the old key for up to AUTH_CACHE_SECONDS more, and a
    websocket that authenticated with it stays open until it closes.
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
# request (bench/api_bench.py). Unknown keys are never cached.
AUTH_CACHE_SECONDS = 10.0
AUTH_CACHE_SIZE = 10_000
_auth_cache: dict[str, tuple[float, AccountRef]] = {}


async def authenticate(api_key: str | None) -> AccountRef:
    if not api_key:
        raise Unauthenticated("Missing API key: send it in the x-api-key header.")
    key_hash = hash_api_key(api_key)
    cached = _auth_cache.get(key_hash)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    row = await Account.select(Account.id, Account.name).where(Account.api_key_hash == key_hash).first()
    if row is None:
        raise Unauthenticated("Unknown API key.")
    account = AccountRef(id=row["id"], name=row["name"])
    if len(_auth_cache) >= AUTH_CACHE_SIZE:
        _auth_cache.clear()
    _auth_cache[key_hash] = (time.monotonic() + AUTH_CACHE_SECONDS, account)
    return account
