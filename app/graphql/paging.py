"""Cursor pagination types: `XConnection { nodes pageInfo { endCursor hasNextPage } }`.

Every list that can grow is one of these, with `first` (bounded) and `after` (an opaque
cursor, the `endCursor` of the previous page). Pages come from the services
(app/domain/paging.py), the same ones REST's ?limit=&cursor= use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry

from app.domain.paging import Page

T = TypeVar("T")


@strawberry.type(description="Where a page ends: pass `endCursor` as `after` for the next one.")
class PageInfo:
    end_cursor: str | None = strawberry.field(description="The cursor of the last item; null for an empty page.")
    has_next_page: bool


@strawberry.type(description="One page of a list.")
class Connection(Generic[T]):
    nodes: list[T]
    page_info: PageInfo

    @classmethod
    def of(cls, page: Page, build: Callable[[Any], Any]) -> "Connection[Any]":
        return cls(nodes=[build(item) for item in page.items],
                   page_info=PageInfo(end_cursor=page.end_cursor, has_next_page=page.has_next_page))
