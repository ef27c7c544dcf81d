"""Times each GraphQL query and mutation for pal_graphql_request_duration_seconds (app/metrics.py).

Called from the schema's error extension (`MeteredDomainErrors`, app/graphql/schema.py), so
HTTP and websocket operations alike are timed from parsing to the result. Subscriptions are not: they last as long as the client listens, and are counted
open instead (pal_graphql_subscriptions_open, app/graphql/transport.py).
"""

from __future__ import annotations

import time

from strawberry.types import ExecutionContext

from app import metrics


def observe_operation(context: ExecutionContext, started: float) -> None:
    """Record one finished query or mutation (subscriptions are counted open instead)."""
    try:
        operation_type = context.operation_type.value
    except Exception:  # the document did not parse, or names no operation
        operation_type = "unknown"
    if operation_type == "subscription":
        return
    result = context.result
    ok = not context.pre_execution_errors and not (result is not None and result.errors)
    metrics.observe_graphql(operation_type, ok, time.perf_counter() - started)
