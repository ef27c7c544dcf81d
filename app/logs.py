"""One log format for every process, so an operator can grep across API, worker and SMTP."""

import logging

from app.config import get_settings


def setup_logging(process: str) -> None:
    logging.basicConfig(
        level=get_settings().log_level,
        format=f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("asyncio", "websockets", "uc", "nodriver", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
