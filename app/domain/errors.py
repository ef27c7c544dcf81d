"""Domain errors: expected failures that both APIs turn into clear client errors."""

from __future__ import annotations


class DomainError(Exception):
    """Base class. `code` is the GraphQL `extensions.code`; `status` the HTTP status."""

    code = "BAD_USER_INPUT"
    status = 400

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class ValidationFailed(DomainError):
    """Input that breaks a rule; `field` names the offending field."""


class Unauthenticated(DomainError):
    code = "UNAUTHENTICATED"
    status = 401


class NotFound(DomainError):
    code = "NOT_FOUND"
    status = 404


class Conflict(DomainError):
    """A request that clashes with the current state (e.g. ending a finished join)."""

    code = "CONFLICT"
    status = 409


class QuotaExceeded(DomainError):
    """A request that would take the account past one of its quotas; the message names the
    quota (its setting) and the limit."""

    code = "QUOTA_EXCEEDED"
    status = 403

    def __init__(self, message: str, *, quota: str, field: str | None = None) -> None:
        super().__init__(message, field=field)
        self.quota = quota
