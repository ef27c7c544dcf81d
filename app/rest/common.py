"""Shared REST plumbing: API-key auth dependency and error responses."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import Parameter

from app import outages
from app.domain.errors import DomainError
from app.domain.paging import Page
from app.rest.openapi import PAGE_CURSOR_DESCRIPTION, PAGE_LIMIT_DESCRIPTION
from app.services.accounts import AccountRef, authenticate
from app.services.rows import NUL_TEXT_ERRORS, as_client_error

log = logging.getLogger(__name__)

# Every REST list pages with ?limit=&cursor= and answers {data, total_count, next_cursor}.
# The bounds are checked by the services (app/domain/paging.py), so the 400 names the parameter.
PageLimit = Annotated[int | None, Parameter(description=PAGE_LIMIT_DESCRIPTION)]
PageCursor = Annotated[str | None, Parameter(description=PAGE_CURSOR_DESCRIPTION)]
REST_PAGE_NAMES = ("limit", "cursor")


def listing(page: Page, total: int) -> Any:
    """A REST list's body: one page of `data`, the list's `total_count`, and `next_cursor`."""
    return {"data": page.items, "total_count": total, "next_cursor": page.end_cursor if page.has_next_page else None}


async def current_account(request: Request) -> AccountRef:
    """The caller's account, from the x-api-key header (401 otherwise)."""
    return await authenticate(request.headers.get("x-api-key"))


def _error(status: int, message: str, field: str | None = None, code: str | None = None,
           headers: dict[str, str] | None = None) -> Response:
    """The one REST error body, {"error", "field"?, "code"?} (ErrorBody in app/rest/openapi.py)."""
    body: dict[str, object] = {"error": message}
    if field:
        body["field"] = field
    if code:
        body["code"] = code
    return Response(body, status_code=status, headers=headers)


def domain_error_handler(_: Request, exc: DomainError) -> Response:
    return _error(exc.status, exc.message, exc.field, exc.code)


def http_error_handler(_: Request, exc: HTTPException) -> Response:
    message = exc.detail or "Request failed."
    if isinstance(exc, ValidationException) and exc.extra:
        message = f"{message}: {exc.extra}"
    # Keep the exception's headers: a 405 must say which methods are allowed (Allow).
    return _error(exc.status_code, message, headers=dict(exc.headers) if exc.headers else None)


def client_data_error_handler(request: Request, exc: Exception) -> Response:
    error = as_client_error(exc)
    return domain_error_handler(request, error) if error else internal_error_handler(request, exc)


def binary_form_field_handler(_: Request, exc: UnicodeDecodeError) -> Response:
    # Litestar decodes every multipart part sent without a filename as UTF-8 text.
    return _error(400, "A form field is not UTF-8 text: send binary parts (video, audio) as files, "
                       "with a filename.")


def internal_error_handler(request: Request, exc: Exception) -> Response:
    if outages.report(exc):
        # PostgreSQL or Redis cannot be reached: a 503 the client may retry, and no traceback
        # (app/outages.py logs one WARNING when the outage starts, one INFO when it ends).
        return _error(503, outages.MESSAGE, code=outages.SERVICE_UNAVAILABLE,
                      headers=outages.retry_after_headers())
    # The client gets no traceback; the operator gets it in the log.
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return _error(500, "Internal error.")


EXCEPTION_HANDLERS = {
    DomainError: domain_error_handler,
    **{error: client_data_error_handler for error in NUL_TEXT_ERRORS},
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}
