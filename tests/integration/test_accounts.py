"""Accounts from the CLI: create one, rotate its key; the old key stops working."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from app.domain.errors import NotFound, Unauthenticated
from app.services.accounts import authenticate, create_account, rotate_api_key

ROOT = Path(__file__).resolve().parents[2]


async def cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app", *args, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, out.decode(), err.decode()


async def test_rotation_retires_the_old_key_in_this_process(clean_db) -> None:
    account, old = await create_account("acme")
    assert (await authenticate(old)).id == account.id  # now cached as valid

    new = await rotate_api_key(account.id)

    assert new != old
    assert (await authenticate(new)).id == account.id
    with pytest.raises(Unauthenticated):
        await authenticate(old)


async def test_cli_creates_and_rotates_keys(clean_db, client) -> None:
    code, out, _ = await cli("create-account", "acme")
    assert code == 0
    account_id = int(re.search(r"created account (\d+)", out).group(1))
    old = out.strip().splitlines()[-1]

    code, out, _ = await cli("rotate-key", str(account_id))
    assert code == 0
    new = out.strip().splitlines()[-1]
    assert new.startswith("pal_") and new != old
    assert (await client.get("/v2/pals", headers={"x-api-key": old})).status_code == 401
    assert (await client.get("/v2/pals", headers={"x-api-key": new})).status_code == 200


async def test_rotating_an_unknown_account_is_a_clear_error(clean_db) -> None:
    for missing in (999_999, 0, 2**40):  # 2**40 is no int4 id: not found, not a DB error
        with pytest.raises(NotFound):
            await rotate_api_key(missing)
    code, out, err = await cli("rotate-key", "999999")
    assert code == 1 and "No account with id 999999" in err and "pal_" not in out
