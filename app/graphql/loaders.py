"""Per-request DataLoaders: a PAL's joins, meetings and events for many PALs in one query each.

`pals { nodes { joins { ... } meetings { ... } } }` asks for each PAL's lists; without
batching that is one query per PAL and list (N+1). Each loader gathers the keys of one
tick and asks its service for all those PALs at once (a window query,
app/services/rows.first_rows_per_pal). Keys with different page arguments are separate
groups, one query each. No caching (cache=False): over a websocket the context lives
for the whole connection, and a cached page would go stale between operations.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

from strawberry.dataloader import DataLoader

from app.clock import utcnow
from app.domain.paging import Page
from app.services.events import events_pages
from app.services.joins import histories, joins_pages
from app.services.meetings import meetings_pages

# (account id, pal id, page arguments...) -> Page
Key = tuple[Any, ...]
PagesFn = Callable[[int, list[str], tuple[Any, ...]], Awaitable[dict[str, Page]]]


def _batched(fetch: PagesFn) -> Callable[[list[Key]], Awaitable[list[Page | BaseException]]]:
    async def load(keys: list[Key]) -> list[Page | BaseException]:
        groups: dict[tuple[Any, ...], list[str]] = defaultdict(list)
        for account_id, pal_id, *args in keys:
            groups[(account_id, *args)].append(pal_id)
        found: dict[tuple[Any, ...], dict[str, Page] | BaseException] = {}
        for (account_id, *args), pal_ids in groups.items():
            try:
                found[(account_id, *args)] = await fetch(account_id, list(dict.fromkeys(pal_ids)), tuple(args))
            except Exception as exc:  # e.g. a bad cursor: that group's fields fail, the others still load
                found[(account_id, *args)] = exc
        results: list[Page | BaseException] = []
        for account_id, pal_id, *args in keys:
            pages = found[(account_id, *args)]
            results.append(pages if isinstance(pages, BaseException) else pages[pal_id])
        return results
    return load


async def _joins(account_id: int, pal_ids: list[str], args: tuple[Any, ...]) -> dict[str, Page]:
    first, after, upcoming = args
    return await joins_pages(account_id, pal_ids, first=first, after=after, upcoming=upcoming)


async def _meetings(account_id: int, pal_ids: list[str], args: tuple[Any, ...]) -> dict[str, Page]:
    first, after = args
    return await meetings_pages(account_id, pal_ids, utcnow(), first=first, after=after)


async def _events(account_id: int, pal_ids: list[str], args: tuple[Any, ...]) -> dict[str, Page]:
    first, after, newest_first = args
    return await events_pages(account_id, pal_ids, first=first, after=after, newest_first=newest_first)


async def _histories(join_pks: list[int]) -> list[list[dict[str, Any]]]:
    found = await histories(join_pks)
    return [found[pk] for pk in join_pks]


class Loaders:
    """The loaders of one request (made on first use, app/graphql/context.py)."""

    def __init__(self) -> None:
        self.joins: DataLoader[Key, Page] = DataLoader(load_fn=_batched(_joins), cache=False)
        self.meetings: DataLoader[Key, Page] = DataLoader(load_fn=_batched(_meetings), cache=False)
        self.events: DataLoader[Key, Page] = DataLoader(load_fn=_batched(_events), cache=False)
        self.histories: DataLoader[int, list[dict[str, Any]]] = DataLoader(load_fn=_histories, cache=False)
