"""Helpers for rows as Piccolo returns them."""

from __future__ import annotations

import json
from typing import Any

from asyncpg.exceptions import CharacterNotInRepertoireError, UntranslatableCharacterError

from app.domain.errors import DomainError, ValidationFailed

# PostgreSQL refuses U+0000 in text and jsonb; both APIs let the database be the one check
# for it instead of scanning every string of every request.
NUL_TEXT_ERRORS = (CharacterNotInRepertoireError, UntranslatableCharacterError)


def json_value(value: Any, default: Any = None) -> Any:
    """Piccolo returns JSONB as text unless asked otherwise; decode it once, here."""
    if value is None:
        return default
    if isinstance(value, (str, bytes)):
        return json.loads(value)
    return value


def as_client_error(exc: BaseException | None) -> DomainError | None:
    """A database refusal that the client's input caused, as the 400 it is (else None)."""
    if isinstance(exc, NUL_TEXT_ERRORS):
        return ValidationFailed("Text must not contain the NUL character (U+0000).")
    return None


async def fetch_row(table: Any, sql: str, *args: Any) -> dict[str, Any] | None:
    """The first row of a fixed SQL statement ($1, $2, ... placeholders), as Piccolo would return it.

    For hot single-row reads: building a Piccolo select costs ~0.25 ms of CPU per call (its
    query-string tree, rebuilt every time), several times the query's own cost
    (bench/api_bench.py, docs/benchmarks.md). Runs in the transaction open in this task, if any.
    """
    engine = table._meta.db
    transaction = engine.current_transaction.get()
    if transaction is not None:
        record = await transaction.connection.fetchrow(sql, *args)
    elif engine.pool is not None:
        async with engine.pool.acquire() as connection:
            record = await connection.fetchrow(sql, *args)
    else:
        connection = await engine.get_new_connection()
        try:
            record = await connection.fetchrow(sql, *args)
        finally:
            await connection.close()
    return dict(record) if record is not None else None


async def first_rows_per_pal(table: Any, account_id: int, pal_ids: list[str], *, select: str, order: str,
                             first: int, joins: str = "", where: str = "",
                             args: tuple[Any, ...] = ()) -> dict[str, list[dict[str, Any]]]:
    """Up to first + 1 rows of `table` (aliased `t`) for each of the account's PALs, in one query.

    One window query for any number of PALs is what keeps `pals { joins meetings }` from
    issuing a query per PAL (the DataLoaders in app/graphql/loaders.py). `where` may add
    conditions with `{}` placeholders filled from `args`; `order` is the list's sort key,
    which its keyset cursor follows. Rows come back grouped by public pal_id, in order."""
    name = table._meta.tablename
    sql = (f"SELECT * FROM (SELECT {select}, p.pal_id AS page_pal_id, "
           f"row_number() OVER (PARTITION BY t.pal ORDER BY {order}) AS page_row "
           f"FROM {name} t JOIN pals p ON p.id = t.pal {joins} "
           f"WHERE p.account = {{}} AND p.pal_id = ANY({{}}) {where}) ranked "
           f"WHERE page_row <= {{}} ORDER BY page_pal_id, page_row")
    rows = await table.raw(sql, account_id, list(pal_ids), *args, first + 1)
    grouped: dict[str, list[dict[str, Any]]] = {pal_id: [] for pal_id in pal_ids}
    for row in rows:
        grouped[row["page_pal_id"]].append(row)
    return grouped
