"""Every real invitation in the corpus goes through the whole intake without an error."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest

from app.services import pals as pal_service
from app.services.accounts import create_account
from app.services.inbound import store_message
from app.services.invites import process_inbound
from app.tables import InboundMessage

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "invites"
FILES = sorted(p for p in CORPUS.glob("*") if p.suffix in (".eml", ".ics")) if CORPUS.exists() else []
PAL = "anna@tavusinvite.com"


def as_email(path: Path) -> bytes:
    if path.suffix == ".eml":
        return path.read_bytes()
    ics = path.read_bytes()
    method = re.search(rb"^METHOD:(\w+)", ics, re.MULTILINE)
    message = EmailMessage()
    message["From"] = "organizer@example.com"
    message["To"] = PAL
    message["Subject"] = path.name
    params = {"method": method.group(1).decode()} if method else {}
    message.set_content(ics, maintype="text", subtype="calendar", params=params)
    return message.as_bytes()


@pytest.mark.skipif(not FILES, reason=f"corpus not found at {CORPUS}")
@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
async def test_corpus_file_is_processed(clean_db, redis_queue, path):
    account, _ = await create_account("corpus")
    await pal_service.create_pal(account.id, {"pal_name": "Anna", "default_face_id": "r90bbd427f71",
                                              "layers": {"conferencing": {"username": "anna"}}})
    now = datetime(2026, 11, 24, tzinfo=timezone.utc)
    pk = await store_message(as_email(path), envelope_from="organizer@example.com", recipients=[PAL],
                             source="smtp", now=now)
    result = await process_inbound(pk, now=now)
    row = await InboundMessage.select().where(InboundMessage.id == pk).first()
    assert row["status"] == "processed"
    assert "unreadable" not in str(result.get("ignored", "")), result
    for outcome in result.get("outcomes", []):
        assert outcome.get("outcome") != "error", outcome
