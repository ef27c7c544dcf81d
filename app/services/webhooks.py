"""Webhooks: an account's endpoints, their deliveries, and how one delivery is sent.

REST (app/rest/webhooks.py) and GraphQL (app/graphql/webhooks.py) call the functions here.
Events become deliveries in app/services/webhook_events.py; the outbox that retries them is
app/services/deliveries.py, which calls WebhookKind to send one:

- The URL's host is resolved at each attempt; every address must be public unless
  WEBHOOK_ALLOWED_HOSTS covers the host, and the request goes to the checked address (no
  second lookup; TLS still verifies the host name).
- 10 s for the whole request, redirects never followed (a 3xx is a failure), at most 64 KiB of
  the response read; only a 2xx delivers.
- Failing attempts are retried with exponential backoff and jitter for 3 days; then the
  delivery ends `failed`, the endpoint is marked failing and a `webhook_failing` PAL event
  says so. The next success clears the mark. Failed deliveries can be replayed by id.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from app import metrics
from app.config import get_settings
from app.domain import webhooks as rules
from app.domain.agent_links import address_refusal
from app.services.resolve import Resolver, addresses_of, resolve
from app.domain.errors import Conflict, NotFound, QuotaExceeded, ValidationFailed
from app.domain.ids import new_public_id
from app.domain.join_state import EventKind
from app.domain.paging import Page, page_of, page_size
from app.domain.timefmt import iso_z
from app.services import deliveries
from app.services.deliveries import Outcome
from app.services.events import record_event
from app.services.rows import json_value
from app.services.webhook_events import KIND
from app.tables import Delivery, WebhookEndpoint

log = logging.getLogger(__name__)

USER_AGENT = "pal-meetings-webhooks/1"
FIELDS = ("url", "event_types", "enabled")
PAGE_MAX = 100
DELIVERY_STATUSES = (deliveries.PENDING, deliveries.SENT, deliveries.FAILED)



class _NoQueryInLogs(logging.Filter):
    """httpx logs every request's URL at INFO; a webhook URL's query may hold the customer's
    token, so only scheme://host/path is logged (the outcome is on the delivery's row)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) > 1 and isinstance(args[1], httpx.URL) and args[1].query:
            record.args = (args[0], args[1].copy_with(query=None), *args[2:])
        return True


logging.getLogger("httpx").addFilter(_NoQueryInLogs())


# --- views ----------------------------------------------------------------------------------------

def webhook_view(row: dict[str, Any], secret: str | None = None) -> dict[str, Any]:
    view = {
        "webhook_id": row["webhook_id"],
        "url": row["url"],
        "event_types": json_value(row["event_types"], []),
        "enabled": row["enabled"],
        "failing": row["failing"],
        "failing_since": iso_z(row["failing_since"]) if row["failing_since"] else None,
        "created_at": iso_z(row["created_at"]),
        "updated_at": iso_z(row["updated_at"]),
    }
    if secret is not None:
        view["secret"] = secret  # only when created or rotated
    return view


def delivery_view(row: dict[str, Any], webhook_id: str) -> dict[str, Any]:
    raw = bytes(row["body"])
    return {
        "delivery_id": row["delivery_id"],
        "webhook_id": webhook_id,
        "event_type": row["event_type"],
        "status": row["status"],
        "attempts": row["attempts"],
        "last_status": row["last_status"],
        "last_error": row["last_error"],
        "created_at": iso_z(row["created_at"]),
        "next_attempt_at": iso_z(row["next_attempt_at"]) if row["status"] == deliveries.PENDING else None,
        "sent_at": iso_z(row["sent_at"]) if row["sent_at"] else None,
        "body": json_value(raw.decode(), {}),
    }


# --- endpoints ------------------------------------------------------------------------------------

def _object(data: object) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("The body must be a JSON object.")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise ValidationFailed(f"Unknown field {unknown[0]!r}; allowed: {', '.join(FIELDS)}.", field=unknown[0])
    return data


async def _owned(account_id: int, webhook_id: object) -> dict[str, Any]:
    if not isinstance(webhook_id, str) or len(webhook_id) > 32:
        raise NotFound("Webhook not found.", field="webhook_id")
    row = await WebhookEndpoint.select().where(
        (WebhookEndpoint.webhook_id == webhook_id) & (WebhookEndpoint.account == account_id)).first()
    if row is None:  # another account's webhook is not found either
        raise NotFound(f"Webhook {webhook_id!r} not found.", field="webhook_id")
    return row


async def create_webhook(account_id: int, data: object, now: datetime) -> dict[str, Any]:
    """A new endpoint and its secret (shown only here and on rotation)."""
    data = _object(data)
    url = rules.validate_url(data.get("url"))
    event_types = rules.validate_event_types(data.get("event_types"))
    enabled = rules.validate_enabled(data.get("enabled", True))
    if await WebhookEndpoint.count().where(WebhookEndpoint.account == account_id) >= rules.MAX_WEBHOOKS_PER_ACCOUNT:
        raise QuotaExceeded(f"An account has at most {rules.MAX_WEBHOOKS_PER_ACCOUNT} webhooks.",
                            quota="MAX_WEBHOOKS_PER_ACCOUNT")
    secret = rules.new_secret()
    rows = await WebhookEndpoint.insert(WebhookEndpoint(
        webhook_id=new_public_id("wh_"), account=account_id, url=url, event_types=event_types, enabled=enabled,
        secret=secret, failing=False, created_at=now, updated_at=now)).returning(*WebhookEndpoint.all_columns())
    return webhook_view(rows[0], secret)


async def list_webhooks(account_id: int) -> list[dict[str, Any]]:
    rows = await WebhookEndpoint.select().where(WebhookEndpoint.account == account_id).order_by(WebhookEndpoint.id)
    return [webhook_view(r) for r in rows]


async def get_webhook(account_id: int, webhook_id: str) -> dict[str, Any]:
    return webhook_view(await _owned(account_id, webhook_id))


async def update_webhook(account_id: int, webhook_id: str, data: object, now: datetime) -> dict[str, Any]:
    """Change url, event_types (null: all) and/or enabled."""
    data = _object(data)
    row = await _owned(account_id, webhook_id)
    values: dict[Any, Any] = {WebhookEndpoint.updated_at: now}
    if "url" in data:
        values[WebhookEndpoint.url] = rules.validate_url(data["url"])
    if "event_types" in data:
        values[WebhookEndpoint.event_types] = rules.validate_event_types(data["event_types"])
    if "enabled" in data:
        values[WebhookEndpoint.enabled] = rules.validate_enabled(data["enabled"])
    rows = await WebhookEndpoint.update(values).where(WebhookEndpoint.id == row["id"]).returning(
        *WebhookEndpoint.all_columns())
    return webhook_view(rows[0])


async def delete_webhook(account_id: int, webhook_id: str) -> None:
    """The endpoint and its deliveries (pending ones are not sent any more)."""
    row = await _owned(account_id, webhook_id)
    await WebhookEndpoint.delete().where(WebhookEndpoint.id == row["id"])


async def rotate_secret(account_id: int, webhook_id: str, now: datetime) -> dict[str, Any]:
    """A new secret; the old one keeps signing (a second signature) for 24 h."""
    row = await _owned(account_id, webhook_id)
    secret = rules.new_secret()
    rows = await WebhookEndpoint.update({
        WebhookEndpoint.secret: secret, WebhookEndpoint.previous_secret: row["secret"],
        WebhookEndpoint.previous_until: now + rules.ROTATION_OVERLAP, WebhookEndpoint.updated_at: now,
    }).where(WebhookEndpoint.id == row["id"]).returning(*WebhookEndpoint.all_columns())
    return webhook_view(rows[0], secret)


# --- deliveries -----------------------------------------------------------------------------------

async def list_deliveries(account_id: int, webhook_id: str, *, status: str | None = None,
                          before: str | None = None, limit: object = None,
                          limit_field: str = "limit") -> Page[dict[str, Any]]:
    """Newest first; `before` a delivery id to page on; the page says whether older ones follow."""
    row = await _owned(account_id, webhook_id)
    size = page_size(limit, field=limit_field, limit=PAGE_MAX)
    where = Delivery.endpoint == row["id"]
    if status is not None:
        if status not in DELIVERY_STATUSES:
            raise ValidationFailed(f"status must be one of {', '.join(DELIVERY_STATUSES)}.", field="status")
        where &= Delivery.status == status
    if before is not None:
        where &= Delivery.id < (await _delivery(row, before))["id"]
    rows = await Delivery.select().where(where).order_by(Delivery.id, ascending=False).limit(size + 1)
    return page_of(rows, size, lambda r: r["delivery_id"]).map(lambda r: delivery_view(r, row["webhook_id"]))


async def _delivery(endpoint: dict[str, Any], delivery_id: object) -> dict[str, Any]:
    if not isinstance(delivery_id, str) or len(delivery_id) > 32:
        raise NotFound("Delivery not found.", field="delivery_id")
    row = await Delivery.select().where(
        (Delivery.delivery_id == delivery_id) & (Delivery.endpoint == endpoint["id"])).first()
    if row is None:
        raise NotFound(f"Delivery {delivery_id!r} not found.", field="delivery_id")
    return row


async def replay_delivery(account_id: int, webhook_id: str, delivery_id: str, now: datetime) -> dict[str, Any]:
    """Send a sent or failed delivery again: same webhook-id and body, retried for 3 more days."""
    endpoint = await _owned(account_id, webhook_id)
    row = await _delivery(endpoint, delivery_id)
    if row["status"] == deliveries.PENDING:
        raise Conflict(f"Delivery {delivery_id!r} is still pending: it is being sent.", field="delivery_id")
    replayed = await deliveries.replay(row["id"], now, give_up_at=now + rules.GIVE_UP_AFTER)
    if replayed is None:
        raise NotFound(f"Delivery {delivery_id!r} not found.", field="delivery_id")
    return delivery_view(replayed, endpoint["webhook_id"])


# --- sending --------------------------------------------------------------------------------------

class Clients:
    """One httpx client per endpoint origin (scheme, host name, port), reused across sends.

    Creating a client builds an SSL context (milliseconds of CPU), and keeping connections
    open spares a TCP/TLS handshake per delivery. The request URL holds the checked address,
    so connections are pooled per address; keying clients by host name keeps a TLS connection
    verified for one name from ever carrying another name's requests."""

    MAX = 64

    def __init__(self, verify: ssl.SSLContext | bool = True) -> None:
        self._clients: OrderedDict[str, httpx.AsyncClient] = OrderedDict()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.verify = verify  # tests trust their own certificate authority

    async def get(self, key: str, timeout: float) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # clients belong to the loop that made them
            self._clients.clear()
            self._loop = loop
        client = self._clients.pop(key, None)
        if client is None:
            client = httpx.AsyncClient(follow_redirects=False, trust_env=False, timeout=timeout, verify=self.verify,
                                       limits=httpx.Limits(max_connections=20, max_keepalive_connections=4))
        self._clients[key] = client
        while len(self._clients) > self.MAX:
            _, old = self._clients.popitem(last=False)
            await old.aclose()
        return client


async def post(url: str, body: bytes, headers: dict[str, str], *, allowed: tuple[str, ...],
               resolver: Resolver = resolve, timeout: float = rules.REQUEST_TIMEOUT_SECONDS,
               clients: Clients | None = None) -> Outcome:
    """POST `body` to `url` under the outbound rules above; never raises."""
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".")
    secure = parts.scheme.lower() == "https"
    port = parts.port or rules.SCHEMES[parts.scheme.lower()]
    try:
        infos = await asyncio.wait_for(resolver(host, port), timeout)
    except (OSError, TimeoutError) as exc:
        return Outcome(ok=False, error=f"cannot resolve {host}: {exc}")
    addresses = addresses_of(infos)
    why = address_refusal(host, addresses, allowed, setting="WEBHOOK_ALLOWED_HOSTS")
    if why is not None:
        return Outcome(ok=False, error=f"refused: {why}")
    address = addresses[0]
    netloc = f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
    target = urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))
    request_headers = {**headers, "host": parts.netloc, "user-agent": USER_AGENT}
    extensions = {"sni_hostname": host} if secure else {}
    try:
        client = await (clients or Clients()).get(f"{parts.scheme.lower()}://{host}:{port}", timeout)
        async with asyncio.timeout(timeout):  # the whole exchange, however slowly bytes trickle
            async with client.stream("POST", target, content=body, headers=request_headers,
                                     extensions=extensions) as response:
                excerpt = b""
                read = 0
                async for chunk in response.aiter_raw():  # never past MAX_RESPONSE_BYTES
                    if len(excerpt) < 300:
                        excerpt += chunk[:300 - len(excerpt)]
                    read += len(chunk)
                    if read >= rules.MAX_RESPONSE_BYTES:
                        break  # leaving the stream unread closes the connection
                status = response.status_code
                location = response.headers.get("location", "")
    except TimeoutError:
        return Outcome(ok=False, error=f"timed out after {timeout:g} s")
    except httpx.HTTPError as exc:
        return Outcome(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
    if rules.response_ok(status):
        return Outcome(ok=True, status=status)
    if 300 <= status < 400:
        return Outcome(ok=False, status=status, error=f"HTTP {status}: redirect to {location[:200]!r} not followed")
    text = excerpt.decode("utf-8", "replace")
    return Outcome(ok=False, status=status, error=f"HTTP {status}: {text}"[:500])


def attempt_result(outcome: Outcome, final: bool) -> str:
    """The metrics label of one attempt (app/metrics.WEBHOOK_RESULTS)."""
    if outcome.ok:
        return "delivered"
    if final:
        return "gave_up"
    error = outcome.error or ""
    if error.startswith("refused"):
        return "refused"
    return "timeout" if error.startswith("timed out") else "failed"


class WebhookKind:
    """Signed POSTs to the endpoint's current URL; retried for 3 days (give_up_at), then failed."""

    name = KIND

    def __init__(self, *, wall: Callable[[], float] = time.time, resolver: Resolver = resolve,
                 timeout: float = rules.REQUEST_TIMEOUT_SECONDS) -> None:
        self.wall = wall  # the webhook-timestamp is the receiver's wall clock, not the injected now
        self.resolver = resolver
        self.timeout = timeout
        self.clients = Clients()

    async def send(self, row: dict[str, Any], now: datetime) -> Outcome:
        endpoint = await WebhookEndpoint.select().where(WebhookEndpoint.id == row["endpoint"]).first()
        if endpoint is None:
            return Outcome(ok=False, error="webhook deleted")
        if not endpoint["enabled"]:
            return Outcome(ok=False, error="webhook disabled")
        row["endpoint_failing"] = endpoint["failing"]  # after() clears the mark only when it is set
        body = bytes(row["body"])
        signing = rules.signing_secrets(endpoint["secret"], endpoint["previous_secret"], endpoint["previous_until"],
                                        now)
        headers = rules.signed_headers(signing, row["delivery_id"], int(self.wall()), body)
        return await post(endpoint["url"], body, headers, allowed=get_settings().webhook_allowed_hosts,
                          resolver=self.resolver, timeout=self.timeout, clients=self.clients)

    def retry_at(self, row: dict[str, Any], attempts: int, now: datetime) -> datetime | None:
        if row["give_up_at"] is not None and now >= row["give_up_at"]:
            return None
        return now + rules.backoff(attempts)

    async def after(self, row: dict[str, Any], attempts: int, outcome: Outcome, final: bool,
                    now: datetime) -> None:
        metrics.count_webhook_delivery(attempt_result(outcome, final))
        if outcome.ok:
            if not row.get("endpoint_failing"):
                return
            await WebhookEndpoint.update({WebhookEndpoint.failing: False, WebhookEndpoint.failing_since: None}).where(
                (WebhookEndpoint.id == row["endpoint"]) & (WebhookEndpoint.failing == True))  # noqa: E712
            return
        log.info("webhook delivery %s attempt %s failed: %s", row["delivery_id"], attempts, outcome.error)
        if not final:
            return
        marked = await WebhookEndpoint.update({WebhookEndpoint.failing: True, WebhookEndpoint.failing_since: now}).where(
            (WebhookEndpoint.id == row["endpoint"]) & (WebhookEndpoint.failing == False)  # noqa: E712
        ).returning(WebhookEndpoint.webhook_id)
        log.warning("webhook delivery %s failed for good after %s attempts: %s", row["delivery_id"], attempts,
                    outcome.error)
        if row["pal"]:
            webhook_id = marked[0]["webhook_id"] if marked else None
            if webhook_id is None:
                found = await WebhookEndpoint.select(WebhookEndpoint.webhook_id).where(
                    WebhookEndpoint.id == row["endpoint"]).first()
                webhook_id = found["webhook_id"] if found else None
            await record_event(row["pal"], EventKind.WEBHOOK_FAILING, {
                "webhook_id": webhook_id, "delivery_id": row["delivery_id"], "event_type": row["event_type"],
                "attempts": attempts, "error": (outcome.error or "")[:300], "newly_failing": bool(marked)})


WEBHOOK = deliveries.register(WebhookKind())
