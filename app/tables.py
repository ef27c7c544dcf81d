"""Piccolo table definitions: the whole persistent state of the service.

PostgreSQL is the source of truth; Redis only carries work. Constraints that
protect invariants (unique usernames per domain, one stored event per PAL and
UID, one join per occurrence) live in the database, not only in code.
"""

from __future__ import annotations

from piccolo.columns import (
    JSONB,
    BigInt,
    Boolean,
    Bytea,
    ForeignKey,
    Integer,
    Text,
    Timestamptz,
    Varchar,
)
from piccolo.columns.base import OnDelete
from piccolo.constraints import Unique
from piccolo.table import Table


class Account(Table, tablename="accounts"):
    """A customer. API keys are stored only as SHA-256 hashes."""

    name = Varchar(length=200)
    api_key_hash = Varchar(length=64, unique=True, index=True)
    created_at = Timestamptz()


class Face(Table, tablename="faces"):
    """A likeness video plus a voice. Stock faces have no owner."""

    face_id = Varchar(length=32, unique=True, index=True)
    owner = ForeignKey(references=Account, null=True, on_delete=OnDelete.cascade)
    name = Varchar(length=100)
    voice = Varchar(length=50, default="en")
    video_path = Text(null=True, default=None)
    audio_path = Text(null=True, default=None)
    created_at = Timestamptz()


class Pal(Table, tablename="pals"):
    """An AI agent. `username`/`allowlist` mirror `layers.conferencing` so the DB enforces the rules."""

    pal_id = Varchar(length=32, unique=True, index=True)
    account = ForeignKey(references=Account, null=False, on_delete=OnDelete.cascade)
    pal_name = Varchar(length=200)
    system_prompt = Text(default="")
    pipeline_mode = Varchar(length=20, default="full")
    default_face_id = Varchar(length=32, null=True, default=None)
    layers = JSONB(default={})
    username = Varchar(length=64, null=True, default=None)
    email_domain = Varchar(length=253, null=True, default=None)
    allowlist = JSONB(default=[])
    # API keys of layers.llm / layers.tts, encrypted (app/secret_box.py); never shown.
    secrets = Text(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()

    unique_username_per_domain = Unique(["email_domain", "username"])


class InboundMessage(Table, tablename="inbound_messages"):
    """A raw message exactly as received, stored before we answer 250/202."""

    received_at = Timestamptz()
    source = Varchar(length=10)  # smtp | webhook
    envelope_from = Varchar(length=320, default="")
    recipients = JSONB(default=[])
    message_id = Varchar(length=998, default="")
    raw = Bytea()
    status = Varchar(length=12, default="pending", index=True)  # pending | processed | failed
    attempts = Integer(default=0)
    processed_at = Timestamptz(null=True, default=None)
    result = JSONB(default={})
    # A failed message is never retried: why (recipients_gone | max_attempts), the last
    # attempt's error (bounded, see app/services/inbound.py) and when it ended.
    reason = Varchar(length=40, null=True, default=None)
    last_error = Text(null=True, default=None)
    failed_at = Timestamptz(null=True, default=None)


class CalendarEvent(Table, tablename="calendar_events"):
    """One calendar object per (PAL, UID): the merged master + overrides as received."""

    pal = ForeignKey(references=Pal, null=False, on_delete=OnDelete.cascade)
    uid = Varchar(length=1000)
    organizer = Varchar(length=320)
    sequence = BigInt(default=0)
    dtstamp = Timestamptz(null=True, default=None)
    ics = Text(default="")
    cancelled = Boolean(default=False)
    cancelled_instances = JSONB(default=[])
    summary = Text(default="")
    description = Text(default="")
    meeting_url = Text(null=True, default=None)
    platform = Varchar(length=20, null=True, default=None)
    decision = Varchar(length=12, default="accepted")  # accepted | declined | rejected | cancelled
    reason = Text(null=True, default=None)
    authenticated = Boolean(default=False)
    from_addr = Varchar(length=320, default="")
    sender_addr = Varchar(length=320, default="")
    timezone_problems = JSONB(default=[])
    # Occurrences in the horizon that get no join, and why (caps, overlaps): see replan_event.
    unplanned = JSONB(default=[])
    planned_until = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()

    unique_pal_uid = Unique(["pal", "uid"])


class Conversation(Table, tablename="conversations"):
    """A join dispatched by API rather than by invitation."""

    conversation_id = Varchar(length=32, unique=True, index=True)
    account = ForeignKey(references=Account, null=False, on_delete=OnDelete.cascade)
    pal = ForeignKey(references=Pal, null=False, on_delete=OnDelete.cascade)
    face_id = Varchar(length=32)
    meeting_url = Text()
    created_at = Timestamptz()
    # The meeting's notes, written by a full-pipeline PAL when it leaves (app/services/notes.py):
    # status none | writing | ready | failed.
    notes_status = Varchar(length=10, default="none")
    notes = JSONB(null=True, default=None)
    notes_error = Text(null=True, default=None)
    notes_at = Timestamptz(null=True, default=None)


class Join(Table, tablename="joins"):
    """One planned or running Meet join: for an occurrence, or for a conversation."""

    pal = ForeignKey(references=Pal, null=False, on_delete=OnDelete.cascade)
    calendar_event = ForeignKey(references=CalendarEvent, null=True, on_delete=OnDelete.cascade)
    conversation = ForeignKey(references=Conversation, null=True, on_delete=OnDelete.cascade)
    recurrence_id = Varchar(length=40, default="")
    meeting_url = Text()
    start_at = Timestamptz()
    end_at = Timestamptz(null=True, default=None)
    join_at = Timestamptz(index=True)
    status = Varchar(length=16, default="scheduled", index=True)
    reason = Text(null=True, default=None)
    plan_version = Integer(default=1)
    stop_requested = Boolean(default=False)
    created_at = Timestamptz()
    updated_at = Timestamptz()
    # At most one *scheduled* join per occurrence: a partial unique index, see the
    # migration "joins_partial_unique". Finished joins stay as history beside it.


class JoinStatusChange(Table, tablename="join_status_changes"):
    """Every status a join passed through, with when."""

    join = ForeignKey(references=Join, null=False, on_delete=OnDelete.cascade)
    status = Varchar(length=16)
    reason = Text(null=True, default=None)
    at = Timestamptz()


class TranscriptEntry(Table, tablename="transcript_entries"):
    """One line of a conversation's transcript: a final caption, a chat message, or what the PAL said.

    Read in insertion order (``id``) per conversation: see the index in the migration
    "transcript_entries" and app/services/transcripts.py."""

    conversation = ForeignKey(references=Conversation, null=False, on_delete=OnDelete.cascade)
    kind = Varchar(length=8)  # speech | chat
    speaker = Varchar(length=200, default="")
    text = Text()
    is_self = Boolean(default=False)  # said or sent by the PAL itself
    at = Timestamptz()  # when it happened in the meeting
    created_at = Timestamptz()


class WebhookEndpoint(Table, tablename="webhook_endpoints"):
    """Where an account wants its PALs' events POSTed (docs/webhooks.md). The secret signs
    (HMAC) so it is kept as given out; a rotated-away one keeps signing until previous_until."""

    webhook_id = Varchar(length=32, unique=True, index=True)
    account = ForeignKey(references=Account, null=False, on_delete=OnDelete.cascade, index=True)
    url = Text()
    event_types = JSONB(default=[])  # empty: every type but the opt-in ones
    enabled = Boolean(default=True)
    secret = Varchar(length=100)
    previous_secret = Varchar(length=100, null=True, default=None)
    previous_until = Timestamptz(null=True, default=None)
    failing = Boolean(default=False)  # a delivery gave up after 3 days; cleared by the next success
    failing_since = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class Delivery(Table, tablename="deliveries"):
    """The one durable outbox (app/services/deliveries.py): iMIP replies (kind `email`) and
    webhook calls (kind `webhook`) are rows here, claimed with SKIP LOCKED under a lease and
    retried with backoff. Rows sharing an order_key go out one at a time, in id order."""

    delivery_id = Varchar(length=32, unique=True)  # public id; a webhook's `webhook-id`
    kind = Varchar(length=10)  # email | webhook
    pal = ForeignKey(references=Pal, null=True, on_delete=OnDelete.set_null)
    endpoint = ForeignKey(references=WebhookEndpoint, null=True, on_delete=OnDelete.cascade)
    dedupe_key = Varchar(length=500, null=True, default=None, unique=True)
    order_key = Varchar(length=100, null=True, default=None)
    event_type = Varchar(length=40, null=True, default=None)
    body = Bytea()  # what is sent, byte for byte: a MIME message, or the signed JSON
    meta = JSONB(default={})  # email: mail_from, rcpt_to
    status = Varchar(length=10, default="pending")  # pending | sent | failed
    attempts = Integer(default=0)
    next_attempt_at = Timestamptz()
    lease_until = Timestamptz(null=True, default=None)
    lease_token = Varchar(length=32, null=True, default=None)
    give_up_at = Timestamptz(null=True, default=None)  # webhooks: failing past this ends `failed`
    last_error = Text(null=True, default=None)
    last_status = Integer(null=True, default=None)  # webhooks: the last HTTP status
    created_at = Timestamptz()
    sent_at = Timestamptz(null=True, default=None)


class PalEvent(Table, tablename="pal_events"):
    """The ordered log of everything that happened in a PAL's meeting life."""

    pal = ForeignKey(references=Pal, null=False, on_delete=OnDelete.cascade, index=True)
    kind = Varchar(length=40)
    payload = JSONB(default={})
    created_at = Timestamptz()
