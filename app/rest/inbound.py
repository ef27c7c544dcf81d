"""POST /v2/inbound-email: the webhook door for mail providers that deliver by HTTP.

Each request is signed: ``x-webhook-timestamp`` (Unix seconds) and
``x-webhook-signature: v1=<hex>``, the HMAC-SHA256 of ``<timestamp>.<raw body>`` under
INBOUND_WEBHOOK_SECRET. A timestamp outside INBOUND_WEBHOOK_MAX_AGE_SECONDS (either way)
is refused, so a captured request cannot be replayed later; one replayed inside the
window stores the same message again, which ingestion treats as a redelivery (no change,
no second reply). The old static ``x-webhook-secret`` header is no longer accepted: it
never expired and proved nothing about the body.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from email.utils import getaddresses

from litestar import Controller, Request, post
from litestar.exceptions import ClientException, NotAuthorizedException

from app.clock import utcnow
from app.config import get_settings
from app.rest.openapi import error_responses
from app.services.inbound import distinct_recipients, store_message

SIGNATURE_SCHEME = "v1"
MAX_SIGNATURES = 5  # a comma-separated list lets a sender sign with old and new secret while rotating


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``timestamp + "." + body``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def signed_headers(request: Request, *, now: float | None = None) -> tuple[str, str]:
    """The timestamp and signature headers, checked for presence and freshness (before
    the body is read: a request that cannot be valid costs no upload)."""
    settings = get_settings()
    secret = settings.inbound_webhook_secret
    if not secret:
        raise NotAuthorizedException("The inbound webhook is disabled: set INBOUND_WEBHOOK_SECRET.")
    timestamp = request.headers.get("x-webhook-timestamp", "").strip()
    given = request.headers.get("x-webhook-signature", "")
    if not timestamp or not given:
        hint = (" x-webhook-secret is no longer accepted;" if request.headers.get("x-webhook-secret") else "")
        raise NotAuthorizedException(
            f"Unsigned webhook request:{hint} send x-webhook-timestamp (Unix seconds) and "
            "x-webhook-signature: v1=<hex HMAC-SHA256 of '<timestamp>.<body>' with the webhook secret>.")
    if not (timestamp.isascii() and timestamp.isdigit()) or len(timestamp) > 12:
        raise NotAuthorizedException("x-webhook-timestamp must be Unix seconds.")
    window = settings.inbound_webhook_max_age
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > window:
        raise NotAuthorizedException(
            f"x-webhook-timestamp is {abs(int(age))} s {'old' if age > 0 else 'in the future'}; "
            f"requests are accepted within {window:g} s of the current time.")
    return timestamp, given


def check_signature(timestamp: str, given: str, body: bytes) -> None:
    """Constant-time check of ``v1=<hex>`` (a comma-separated list, for secret rotation)."""
    expected = signature(get_settings().inbound_webhook_secret, timestamp, body).encode()
    ok = False
    for part in given.split(",")[:MAX_SIGNATURES]:
        scheme, _, value = part.strip().partition("=")
        if scheme == SIGNATURE_SCHEME:
            # compare every candidate (no early exit): the time taken says nothing about the secret
            ok |= hmac.compare_digest(value.strip().lower().encode("ascii", "replace"), expected)
    if not ok:
        raise NotAuthorizedException("Wrong webhook signature (x-webhook-signature: v1=<hex>).")


class InboundEmailController(Controller):
    path = "/v2/inbound-email"
    tags = ["Inbound mail"]

    @post("/", status_code=202, summary="Deliver one raw RFC 5322 message (signed)",
          request_max_body_size=get_settings().max_message_bytes,
          responses=error_responses(400, 401, 413))  # the real error body in /docs (app/rest/openapi.py)
    async def deliver(self, request: Request, to: list[str] | None = None, mail_from: str = "") -> dict[str, object]:
        """The body is the raw message, signed with `x-webhook-timestamp` and
        `x-webhook-signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>">`. Envelope
        recipients come from `?to=` (repeatable), else from the To and Cc headers."""
        timestamp, given = signed_headers(request)
        raw = await request.body()
        check_signature(timestamp, given, raw)
        if not raw.strip():
            raise ClientException("Empty body: send the raw RFC 5322 message.")
        if len(raw) > get_settings().max_message_bytes:
            raise ClientException("Message too large.", status_code=413)
        recipients = distinct_recipients(to or [addr for _, addr in getaddresses(
            [h for h in _header_lines(raw, ("to", "cc"))]) if addr])
        if not recipients:
            raise ClientException("No recipients: pass ?to=<address> or a To header.")
        limit = get_settings().smtp_max_recipients
        if len(recipients) > limit:
            raise ClientException(f"Too many recipients: at most {limit} per message.")
        message_pk = await store_message(raw, envelope_from=mail_from, recipients=recipients,
                                         source="webhook", now=utcnow())
        return {"status": "accepted", "message_id": message_pk}


def _header_lines(raw: bytes, names: tuple[str, ...]) -> list[str]:
    from email.parser import BytesHeaderParser

    headers = BytesHeaderParser().parsebytes(raw[:65536])
    return [str(v) for name in names for v in headers.get_all(name, [])]
