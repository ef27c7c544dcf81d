"""Shared fixtures: a real PostgreSQL test database and Redis on loopback.

The test database is DATABASE_URL's server with the database name `pal_test`
(or TEST_DATABASE_URL); Redis uses database 15 of REDIS_URL's server. Both must
be on loopback: tests never talk to another address.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from urllib.parse import urlparse, urlunparse


def _loopback_only(url: str) -> str:
    host = urlparse(url).hostname or "127.0.0.1"
    address = socket.gethostbyname(host)
    if not ipaddress.ip_address(address).is_loopback:
        raise RuntimeError(f"tests run against loopback only, not {host}")
    return url


def _test_urls() -> tuple[str, str]:
    base_db = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/pal")
    name = os.environ.get("TEST_DB_NAME", "pal_test")
    db_url = os.environ.get("TEST_DATABASE_URL") or urlunparse(urlparse(base_db)._replace(path=f"/{name}"))
    base_redis = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    redis_db = os.environ.get("TEST_REDIS_DB", "15")
    redis_url = os.environ.get("TEST_REDIS_URL") or urlunparse(urlparse(base_redis)._replace(path=f"/{redis_db}"))
    return _loopback_only(db_url), _loopback_only(redis_url)


# Piccolo binds tables to the engine at import time, so the environment must be
# set before anything imports app.tables.
TEST_DATABASE_URL, TEST_REDIS_URL = _test_urls()
os.environ["DATABASE_URL"] = TEST_DATABASE_URL
os.environ["REDIS_URL"] = TEST_REDIS_URL
os.environ.setdefault("PAL_EMAIL_DOMAIN", "tavusinvite.com")
# Most tests deliver unsigned invites; the production default (strict) would drop them.
# Tests of the default set it back themselves (tests/integration/test_mail_security.py).
# Even in mark mode nothing is ever answered to an unauthenticated organizer.
os.environ.setdefault("SENDER_AUTH", "mark")
# No test may reach a real LLM or voice service: the tests that need one run tests/llm_stub.py
# on loopback and configure it on their PAL (layers.llm) or in the environment themselves.
for _name in ("LLM_BASE_URL", "LLM_API_KEY", "LLM_ALLOWED_HOSTS", "SECRET_KEY"):
    os.environ.pop(_name, None)

pytest_plugins = ["tests.fixtures", "tests.meet_lookalike.fixtures"]
