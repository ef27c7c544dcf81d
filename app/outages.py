"""PostgreSQL and Redis outages, as one API process sees them (issue 15).

* `dependency_of(exc)` says whether an exception means "PostgreSQL (or Redis) cannot be
  reached right now" — and which — as opposed to a bug or a bad query. Only connection
  failures count: refused or reset connections, a server shutting down or starting up,
  too many connections, a closed connection or pool, a connect that timed out.
* `report(exc)` is what the adapters call on any unexpected error: None when it is not an
  outage (their old path: 500 and a traceback), else the dependency. They answer 503 with
  `Retry-After` (REST `code`, GraphQL `extensions.code` SERVICE_UNAVAILABLE); this module
  does the logging: one WARNING when an outage starts and one INFO when it ends, with its
  duration, never a traceback per request.
* A failure is first *suspected*: a probe (`SELECT 1`, `PING`) runs at once. If the server
  answers, one connection broke and nothing else (logged at INFO). If not, the outage is
  declared (the WARNING), listeners are told (app/graphql/transport.py closes GraphQL
  websockets with 1013 and refuses new ones), and the probe repeats every
  PROBE_INTERVAL_SECONDS until the server answers (the INFO).

Requests are never refused on this state alone: each one tries PostgreSQL for real, so
the API answers 200 again as soon as the database does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg
from redis import exceptions as redis_errors

log = logging.getLogger(__name__)

POSTGRESQL = "PostgreSQL"
REDIS = "Redis"
SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
RETRY_AFTER_SECONDS = 5
MESSAGE = "The service is temporarily unavailable; try again in a few seconds."
PROBE_INTERVAL_SECONDS = 0.5
PROBE_TIMEOUT_SECONDS = 2.0

# asyncpg's errors that mean the server is not there for us (class 08, shutdown/startup, full).
_PG_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # 08xxx, ConnectionDoesNotExistError included
    asyncpg.CannotConnectNowError,  # 57P03: starting up or shutting down
    asyncpg.AdminShutdownError,  # 57P01: pg_ctl stop -m fast terminated the session
    asyncpg.CrashShutdownError,  # 57P02
    asyncpg.TooManyConnectionsError,  # 53300
)
_PG_CLOSED = ("connection is closed", "pool is closed", "pool is closing", "connection was closed")
_REDIS_ERRORS = (redis_errors.ConnectionError, redis_errors.TimeoutError)  # BusyLoadingError is one


def _library_of(exc: BaseException) -> str | None:
    """PostgreSQL or Redis when the innermost frame of a library of ours raised `exc`."""
    found = None
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        if module == "asyncpg" or module.startswith("asyncpg."):
            found = POSTGRESQL
        elif module == "redis" or module.startswith("redis."):
            found = REDIS
        tb = tb.tb_next
    return found


def _direct(exc: BaseException) -> str | None:
    if isinstance(exc, _PG_ERRORS):
        return POSTGRESQL
    if isinstance(exc, asyncpg.InterfaceError):
        return POSTGRESQL if any(text in str(exc) for text in _PG_CLOSED) else None
    if isinstance(exc, _REDIS_ERRORS):
        return REDIS
    if isinstance(exc, OSError):  # ConnectionRefusedError, ConnectionResetError, TimeoutError (a connect's)
        return _library_of(exc)  # only when asyncpg or redis-py raised it: not a media file's ENOSPC
    return None


def dependency_of(exc: BaseException | None) -> str | None:
    """PostgreSQL or Redis when `exc` (or what it was raised from) means that server is unreachable."""
    seen = 0
    while exc is not None and seen < 5:
        found = _direct(exc)
        if found:
            return found
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


# --- state ---------------------------------------------------------------------------

@dataclass
class _Outage:
    first_error: str
    suspected_at: float = field(default_factory=time.monotonic)
    declared_at: float | None = None  # None while only suspected
    failures: int = 1
    probe: asyncio.Task | None = None


_outages: dict[str, _Outage] = {}
_listeners: list[Callable[[str], None]] = []


async def _probe_postgresql() -> None:
    from app.db import engine

    await engine().run_ddl("SELECT 1")  # through the pool when there is one


async def _probe_redis() -> None:
    from app.redis_client import redis

    await redis().ping()


PROBES: dict[str, Callable[[], Awaitable[None]]] = {POSTGRESQL: _probe_postgresql, REDIS: _probe_redis}


def on_outage(listener: Callable[[str], None]) -> None:
    """Call `listener(dependency)` (in the event loop) each time an outage is declared."""
    _listeners.append(listener)


def is_down(dependency: str | None = None) -> bool:
    """Whether an outage (of `dependency`, else of either) is declared and not over."""
    names = [dependency] if dependency else list(_outages)
    return any(name in _outages and _outages[name].declared_at is not None for name in names)


def report(exc: BaseException | None, dependency: str | None = None) -> str | None:
    """Note a failure; the dependency it shows is unreachable, or None when it is not an outage."""
    dependency = dependency or dependency_of(exc)
    if dependency is None:
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no loop, nothing to probe with: say it now
        log.warning("%s is unavailable (%s)", dependency, _describe(exc))
        return dependency
    outage = _outages.get(dependency)
    if outage is not None:
        outage.failures += 1
        if outage.probe is not None and not outage.probe.done() and outage.probe.get_loop() is loop:
            return dependency
    else:
        outage = _outages[dependency] = _Outage(_describe(exc))
    # A new outage, or one whose probe died with its event loop (tests run several loops).
    outage.probe = loop.create_task(_watch(dependency, outage), name=f"outage-probe-{dependency}")
    return dependency


def recovered(dependency: str) -> None:
    """Something talked to `dependency` successfully (the probe does this by itself)."""
    outage = _outages.pop(dependency, None)
    if outage is None:
        return
    if outage.probe is not None and outage.probe is not asyncio.current_task():
        outage.probe.cancel()
    if outage.declared_at is None:
        log.info("%s: a connection failed (%s), but the server answers; not an outage",
                 dependency, outage.first_error)
    else:
        log.info("%s recovered after %.1f s (%d failed operations)", dependency,
                 time.monotonic() - outage.suspected_at, outage.failures)


async def _answers(dependency: str) -> bool:
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_SECONDS):
            await PROBES[dependency]()
        return True
    except asyncio.CancelledError:
        raise
    except Exception:
        return False


async def _watch(dependency: str, outage: _Outage) -> None:
    """Confirm the suspected outage, then probe until the server answers again."""
    if outage.declared_at is None:
        if await _answers(dependency):
            if _outages.get(dependency) is outage:
                recovered(dependency)
            return
        if _outages.get(dependency) is not outage:
            return
        outage.declared_at = time.monotonic()
        log.warning("%s is unavailable (%s); what needs it answers 503 (websockets: 1013) until it is back",
                    dependency, outage.first_error)
        for listener in list(_listeners):
            try:
                listener(dependency)
            except Exception:
                log.exception("outage listener %r failed", listener)
    while _outages.get(dependency) is outage:
        await asyncio.sleep(PROBE_INTERVAL_SECONDS)
        if await _answers(dependency) and _outages.get(dependency) is outage:
            recovered(dependency)


def _describe(exc: BaseException | None) -> str:
    if exc is None:
        return "no answer"
    text = str(exc).strip() or "no detail"
    return f"{type(exc).__name__}: {text[:200]}"


async def stop() -> None:
    """Cancel the probes (the app's shutdown); the state is forgotten."""
    loop = asyncio.get_running_loop()
    probes = [outage.probe for outage in _outages.values() if outage.probe is not None]
    _outages.clear()
    for probe in probes:
        probe.cancel()
    ours = [probe for probe in probes if probe.get_loop() is loop]
    if ours:
        await asyncio.wait(ours, timeout=1)


class _PoolFloorFilter(logging.Filter):
    """asyncpg's pool logs a WARNING with a traceback each time it fails to reopen its minimum
    of connections (every 1, 2, 4 … s): during an outage that is noted here instead, once."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and dependency_of(exc) == POSTGRESQL:
            report(exc)
            return False
        return True


logging.getLogger("asyncpg.pool").addFilter(_PoolFloorFilter())


def retry_after_headers() -> dict[str, str]:
    return {"Retry-After": str(RETRY_AFTER_SECONDS)}
