"""A development mail sink: what `make run` relays replies to when SMTP_RELAY_URL is unset.

It stores every message it receives as an .eml file, so a first-time user can read the
PAL's Accepted/Declined replies without configuring a real relay.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from aiosmtpd.smtp import SMTP, Envelope, Session

from app.config import get_settings

log = logging.getLogger(__name__)
DEFAULT_DIR = Path(".data/outbox")


class FileSink:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.count += 1
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        path = self.directory / f"{stamp}-{self.count:05d}.eml"
        path.write_bytes(envelope.original_content or b"")
        log.info("dev mail sink: %s -> %s saved as %s", envelope.mail_from, ", ".join(envelope.rcpt_tos), path)
        return "250 OK"


async def serve_forever(directory: Path = DEFAULT_DIR) -> None:
    url = urlparse(get_settings().smtp_relay_url)
    sink = FileSink(directory)
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(sink, decode_data=False), host=url.hostname or "127.0.0.1", port=url.port or 1025)
    log.info("dev mail sink on %s:%s, saving replies in %s/", url.hostname, url.port, directory)
    async with server:
        await server.serve_forever()
