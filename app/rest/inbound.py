"""POST /v2/inbound-email: the webhook door for mail providers that deliver by HTTP."""

from __future__ import annotations

import hmac
from email.utils import getaddresses

from litestar import Controller, Request, post
from litestar.exceptions import ClientException, NotAuthorizedException

from app.clock import utcnow
from app.config import get_settings
from app.services.inbound import store_message


def _check_secret(request: Request) -> None:
    secret = get_settings().inbound_webhook_secret
    given = request.headers.get("x-webhook-secret") or request.headers.get("authorization", "").removeprefix("Bearer ")
    if not secret:
        raise NotAuthorizedException("The inbound webhook is disabled: set INBOUND_WEBHOOK_SECRET.")
    if not given or not hmac.compare_digest(given.encode(), secret.encode()):
        raise NotAuthorizedException("Wrong or missing webhook secret (x-webhook-secret header).")


class InboundEmailController(Controller):
    path = "/v2/inbound-email"
    tags = ["Inbound mail"]

    @post("/", status_code=202, summary="Deliver one raw RFC 5322 message",
          request_max_body_size=get_settings().max_message_bytes)
    async def deliver(self, request: Request, to: list[str] | None = None, mail_from: str = "") -> dict[str, object]:
        """The body is the raw message. Envelope recipients come from `?to=` (repeatable),
        else from the To and Cc headers."""
        _check_secret(request)
        raw = await request.body()
        if not raw.strip():
            raise ClientException("Empty body: send the raw RFC 5322 message.")
        if len(raw) > get_settings().max_message_bytes:
            raise ClientException("Message too large.", status_code=413)
        recipients = to or [addr for _, addr in getaddresses(
            [h for h in _header_lines(raw, ("to", "cc"))]) if addr]
        if not recipients:
            raise ClientException("No recipients: pass ?to=<address> or a To header.")
        message_pk = await store_message(raw, envelope_from=mail_from, recipients=recipients,
                                         source="webhook", now=utcnow())
        return {"status": "accepted", "message_id": message_pk}


def _header_lines(raw: bytes, names: tuple[str, ...]) -> list[str]:
    from email.parser import BytesHeaderParser

    headers = BytesHeaderParser().parsebytes(raw[:65536])
    return [str(v) for name in names for v in headers.get_all(name, [])]
