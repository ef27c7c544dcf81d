"""Command line: `python -m app <command>`.

  create-account NAME   create an account; the API key is the last line printed
  rotate-key ACCOUNT_ID replace an account's API key; the new key is the last line printed
  migrate               create the database if needed and apply migrations
  serve                 the HTTP API (REST /v2, GraphQL /graphql)
  worker                the arq worker (mail ingestion, joins, outbox, reconciler);
                        runs `python -m workers`
  smtp                  the inbound SMTP server
  mailsink              a development relay that saves outgoing mail under .data/outbox/
  run                   migrate, then API + worker + SMTP together, restarting any that dies
                        (plus the dev mail sink when SMTP_RELAY_URL is unset)
  export-schema         print (or --output) the GraphQL schema

Without DATABASE_URL / REDIS_URL in the environment, commands use the servers that
`make run` (scripts/ensure-services.sh) last recorded in .data/services.env.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

from app.config import PROJECT_ROOT, get_settings, services_file
from app.logs import setup_logging

log = logging.getLogger("app")
DB_COMMANDS = ("create-account", "rotate-key", "migrate", "run")


def _redact(url: str) -> str:
    """The URL without its password, fit to print."""
    parsed = urlparse(url)
    if parsed.password is None:
        return url
    netloc = parsed.netloc.rsplit("@", 1)[-1]
    return parsed._replace(netloc=f"{parsed.username}:***@{netloc}").geturl()


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)


async def _database_problem() -> str | None:
    """None when PostgreSQL answers at DATABASE_URL, else one line telling the user what to do."""
    import asyncpg

    url = get_settings().database_url
    try:
        conn = await asyncpg.connect(url, timeout=10)
    except asyncpg.InvalidCatalogNameError:
        return None  # the server is up; migrate creates the database
    except (OSError, TimeoutError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return (
            f"cannot reach PostgreSQL at {_redact(url)} ({exc}); start the services with `make run` "
            f'or `eval "$(scripts/ensure-services.sh)"` (CLI commands then find them through '
            f"{_shown(services_file())}), or set DATABASE_URL"
        )
    await conn.close()
    return None


async def _create_account(name: str) -> str:
    from app import db
    from app.services.accounts import create_account

    await db.migrate()
    await db.open_pool(min_size=1, max_size=2)
    try:
        account, key = await create_account(name)
    finally:
        await db.close_pool()
    print(f"created account {account.id} ({name}); API key:")
    return key


async def _rotate_key(account_id: int) -> int:
    from app import db
    from app.domain.errors import NotFound
    from app.services.accounts import rotate_api_key

    await db.migrate()
    await db.open_pool(min_size=1, max_size=2)
    try:
        key = await rotate_api_key(account_id)
    except NotFound as exc:
        print(exc.message, file=sys.stderr)
        return 1
    finally:
        await db.close_pool()
    log.info("rotated the API key of account %s", account_id)
    print(f"account {account_id}: the old key stops working within {get_settings().auth_cache_seconds:.0f} s; "
          "new API key:")
    print(key)
    return 0


def _serve() -> None:
    import uvicorn

    from app.rest.limits import server_options

    settings = get_settings()
    # Header, body and keep-alive timeouts and a connection cap: slow clients cannot hold the server.
    uvicorn.run("app.asgi:create_app", factory=True, host=settings.api_host, port=settings.api_port,
                **server_options())


def _worker() -> None:
    """Become `python -m workers` (same pid, so `run` and process managers supervise it)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "workers"])


def _smtp() -> None:
    from app.smtp import serve_forever

    asyncio.run(serve_forever())


def _run_all() -> None:
    """Supervise the three processes; arq's worker can die on a Redis restart, so restart it."""
    from app import db

    asyncio.run(db.migrate())
    names = ["serve", "worker", "smtp"]
    if not get_settings().smtp_relay_configured:
        names.append("mailsink")  # replies land in .data/outbox/ until a real relay is configured
    commands = {name: [sys.executable, "-m", "app", name] for name in names}
    procs = {name: subprocess.Popen(cmd) for name, cmd in commands.items()}
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    settings = get_settings()
    log.info(
        "stack up: API http://%s:%s (GraphiQL /graphql, docs /docs), SMTP %s:%s",
        settings.api_host, settings.api_port, settings.smtp_host, settings.smtp_port,
    )
    while not stopping:
        time.sleep(0.5)
        for name, proc in procs.items():
            if proc.poll() is not None and not stopping:
                log.warning("%s exited with %s; restarting it", name, proc.returncode)
                time.sleep(1)
                procs[name] = subprocess.Popen(commands[name])
    for proc in procs.values():
        proc.terminate()
    for proc in procs.values():
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-account")
    create.add_argument("name")
    rotate = sub.add_parser("rotate-key")
    rotate.add_argument("account_id", type=int)
    for name in ("migrate", "serve", "worker", "smtp", "mailsink", "run"):
        sub.add_parser(name)
    export = sub.add_parser("export-schema")
    export.add_argument("--output", default=None)
    args = parser.parse_args(argv)
    setup_logging(args.command)

    if args.command in DB_COMMANDS:
        problem = asyncio.run(_database_problem())
        if problem:
            print(f"python -m app {args.command}: {problem}", file=sys.stderr)
            return 1
    if args.command == "create-account":
        print(asyncio.run(_create_account(args.name)))
    elif args.command == "rotate-key":
        return asyncio.run(_rotate_key(args.account_id))
    elif args.command == "migrate":
        from app import db

        asyncio.run(db.migrate())
    elif args.command == "serve":
        _serve()
    elif args.command == "worker":
        _worker()
    elif args.command == "smtp":
        _smtp()
    elif args.command == "mailsink":
        from app.devmail import serve_forever

        asyncio.run(serve_forever())
    elif args.command == "run":
        _run_all()
    elif args.command == "export-schema":
        from app.graphql.schema import schema

        text = schema.as_str() + "\n"
        if args.output:
            with open(args.output, "w") as handle:
                handle.write(text)
        else:
            sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
