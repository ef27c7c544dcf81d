"""Turn domain errors into GraphQL errors with `extensions.code`; mask everything else."""

from __future__ import annotations

import logging

import strawberry
from graphql.error import GraphQLError
from strawberry.extensions import MaskErrors
from strawberry.types import ExecutionContext

from app import outages
from app.domain.errors import DomainError
from app.graphql.limits import QUERY_TOO_COMPLEX, is_limit_error, limit_message
from app.services.rows import as_client_error

log = logging.getLogger(__name__)


def _bad_variable(error: GraphQLError, original: BaseException | None) -> bool:
    """An error from coercing the operation's variables, before anything ran (no path)."""
    return (error.path is None and isinstance(original, (GraphQLError, ValueError, TypeError))
            and error.message.startswith("Variable '$"))


class DomainErrors(MaskErrors):
    """Known failures keep their message and gain a code; unexpected ones say only 'Unexpected error.'

    PostgreSQL or Redis out of reach (app/outages.py) is SERVICE_UNAVAILABLE: try again later.
    """

    def _process_result(self, result: object) -> None:
        # MaskErrors checks the result against a runtime Protocol, ~9 µs per operation.
        errors = getattr(result, "errors", None)
        if errors:
            result.errors = self._process_errors(errors)  # type: ignore[attr-defined]

    def _process_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        processed: list[GraphQLError] = []
        for error in errors:
            original = as_client_error(error.original_error) or error.original_error
            if isinstance(original, DomainError):
                extensions = {"code": original.code}
                if original.field:
                    extensions["field"] = original.field
                processed.append(
                    GraphQLError(
                        original.message,
                        nodes=error.nodes,
                        source=error.source,
                        positions=error.positions,
                        path=error.path,
                        extensions=extensions,
                    )
                )
            elif outages.dependency_of(original):
                # PostgreSQL or Redis unreachable: retry later (over HTTP a 503 with Retry-After,
                # app/graphql/transport.py). Logged once per outage by app/outages.py.
                processed.append(GraphQLError(
                    outages.MESSAGE, nodes=error.nodes, source=error.source, positions=error.positions,
                    path=error.path, extensions={"code": outages.SERVICE_UNAVAILABLE}))
            elif _bad_variable(error, original):
                # A variable graphql-core could not coerce (a string for an Int, an enum name that
                # does not exist): the client's input, said as such instead of "Unexpected error.".
                processed.append(GraphQLError(error.message, nodes=error.nodes, source=error.source,
                                              positions=error.positions, extensions={"code": "BAD_USER_INPUT"}))
            elif original is None and is_limit_error(error):
                # graphql-core's own limits (app/graphql/limits.py). A new plain error: over the
                # websocket a *syntax* error would close the socket instead of ending the operation.
                # No location: finding the line of a position scans the (too large) source again.
                processed.append(GraphQLError(limit_message(error), extensions={"code": QUERY_TOO_COMPLEX}))
            elif original is None:
                # Parse and validation errors from graphql-core: the client's fault, not ours.
                error.extensions = {"code": "GRAPHQL_VALIDATION_FAILED", **(error.extensions or {})}
                processed.append(error)
            else:
                masked = self.anonymise_error(error)
                masked.extensions = {"code": "INTERNAL_SERVER_ERROR"}
                processed.append(masked)
        return processed


class AppSchema(strawberry.Schema):
    """Logs a client's mistake as one INFO line; only unexpected errors get a traceback.

    Strawberry logs every error at ERROR with its traceback, so a mistyped PAL id
    looked like a server fault in the operator's log.
    """

    def process_errors(self, errors: list[GraphQLError],
                       execution_context: ExecutionContext | None = None) -> None:
        unexpected = []
        for error in errors:
            original = as_client_error(error.original_error) or error.original_error
            if isinstance(original, DomainError):
                log.info("graphql %s: %s", original.code, original.message)
            elif _bad_variable(error, original):
                log.info("graphql BAD_USER_INPUT: %s", error.message.splitlines()[0][:300])
            elif outages.report(original):
                pass  # one WARNING per outage (app/outages.py), not a traceback per operation
            elif original is None:
                code = (error.extensions or {}).get("code") or (
                    QUERY_TOO_COMPLEX if is_limit_error(error) else "GRAPHQL_VALIDATION_FAILED")
                log.info("graphql %s: %s", code, error.message[:300])
            else:
                unexpected.append(error)
        if unexpected:
            super().process_errors(unexpected, execution_context)
