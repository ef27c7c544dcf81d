"""One log format for every process, so an operator can grep across API, worker and SMTP."""

import logging
import os


def setup_logging(process: str) -> None:
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO").upper(),
        format=f"%(asctime)s {process} %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("asyncio", "websockets", "uc", "nodriver", "mail.log"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
