"""Inbound SMTP (aiosmtpd): accepts mail for existing PALs and stores it before saying 250."""

from __future__ import annotations

import asyncio
import logging

from aiosmtpd.smtp import SMTP, Envelope, Session

from app import db, metrics
from app.clock import utcnow
from app.config import get_settings
from app.metrics_server import serve_process_metrics
from app.services.inbound import store_message
from app.services.invites import announce_sender_auth_mode
from app.services.pals import find_pal_by_address

log = logging.getLogger(__name__)


class InboundHandler:
    """aiosmtpd handler: 550 for unknown recipients at RCPT, durable storage at DATA.

    Each PAL is a recipient of one message once, however often (or in whatever case)
    it is named, and one message reaches at most SMTP_MAX_RECIPIENTS PALs: past that,
    RCPT is answered 452 (RFC 5321 4.5.3.1.10) and the client sends the rest later."""

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if address.strip().lower() in (a.lower() for a in envelope.rcpt_tos):
            return "250 OK"  # already a recipient of this message: not again
        if len(envelope.rcpt_tos) >= get_settings().smtp_max_recipients:
            metrics.count_smtp_recipient("too_many")
            return "452 4.5.3 Too many recipients"
        try:
            pal = await find_pal_by_address(address)
        except Exception:
            log.exception("recipient lookup failed for %s", address)
            metrics.count_smtp_recipient("error")
            return "451 4.3.0 Temporary failure, try again later"
        if pal is None:
            metrics.count_smtp_recipient("unknown")
            return "550 5.1.1 No such mailbox here"
        envelope.rcpt_tos.append(address)
        metrics.count_smtp_recipient("accepted")
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        try:
            message_pk = await store_message(
                raw, envelope_from=envelope.mail_from or "", recipients=list(envelope.rcpt_tos),
                source="smtp", now=utcnow(),
            )
        except Exception:
            log.exception("could not store message from %s", envelope.mail_from)
            return "451 4.3.0 Temporary failure, try again later"
        return f"250 OK queued as {message_pk}"


async def start_smtp_server(host: str | None = None, port: int | None = None) -> asyncio.base_events.Server:
    """Listen in the running loop (so the handler shares the loop's database pool)."""
    settings = get_settings()
    handler = InboundHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, data_size_limit=settings.max_message_bytes, enable_SMTPUTF8=True,
                     decode_data=False, hostname=settings.email_domain, ident="PAL meetings ESMTP"),
        host=host or settings.smtp_host, port=settings.smtp_port if port is None else port,
    )
    return server


async def serve_forever() -> None:
    settings = get_settings()
    await db.open_pool()
    server = await start_smtp_server()
    log.info("SMTP listening on %s:%s for *@%s", settings.smtp_host, settings.smtp_port, settings.email_domain)
    announce_sender_auth_mode()
    exporter = await serve_process_metrics("smtp", settings.smtp_metrics_port)
    try:
        async with server:
            await server.serve_forever()
    finally:
        if exporter is not None:
            await exporter.close()
        await db.close_pool()
