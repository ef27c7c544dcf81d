"""Webhooks, pure part: event types, endpoint URLs, secrets, the body and its signature.

Signed per the Standard Webhooks specification (https://www.standardwebhooks.com/):
``webhook-id``, ``webhook-timestamp`` and ``webhook-signature: v1,<base64 HMAC-SHA256>`` over
``"<id>.<timestamp>.<body>"``, keyed with the base64-decoded part of a ``whsec_<base64>`` secret.
All I/O (storing, sending) is app/services/webhooks.py's.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import random
import secrets
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from app.domain.backoff import doubling
from app.domain.errors import ValidationFailed
from app.domain.timefmt import iso_z
from app.domain.urls import check_url

SCHEMES = {"http": 80, "https": 443}
SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32
ROTATION_OVERLAP = timedelta(hours=24)  # the old secret keeps signing this long after a rotation
GIVE_UP_AFTER = timedelta(days=3)  # a delivery failing this long ends `failed`; its endpoint is failing
MAX_WEBHOOKS_PER_ACCOUNT = 20
REQUEST_TIMEOUT_SECONDS = 10.0
MAX_RESPONSE_BYTES = 64 * 1024
BACKOFF_FIRST_SECONDS = 5.0
BACKOFF_MAX_SECONDS = 3600.0

# The public type of each internal PAL event kind (app/services/events.py record_event).
# Kinds not listed (join_stop_requested, joins_not_planned, webhook_failing, ...) send nothing.
KIND_TO_TYPE: dict[str, str] = {
    "invite_received": "invite.received",
    "invite_accepted": "invite.accepted",
    "invite_declined": "invite.declined",
    "invite_rejected": "invite.rejected",
    "reply_sent": "reply.sent",
    "reply_failed": "reply.failed",
    "join_scheduled": "join.scheduled",
    "join_rescheduled": "join.rescheduled",
    "join_cancelled": "join.cancelled",
    "dispatching": "join.dispatching",
    "joining": "join.joining",
    "waiting_room": "join.waiting_room",
    "in_call": "join.in_call",
    "left": "join.left",
    "failed": "join.failed",
    "notes_ready": "conversation.notes_ready",
}
TRANSCRIPT = "conversation.transcript"  # one per transcript entry; opt-in only (it is chatty)
EVENT_TYPES: tuple[str, ...] = (*KIND_TO_TYPE.values(), TRANSCRIPT)
OPT_IN = frozenset({TRANSCRIPT})


def public_type(kind: str) -> str | None:
    """The webhook type an internal event kind is sent as, or None when it is not sent."""
    return KIND_TO_TYPE.get(str(kind))


def subscribed(event_types: Iterable[str], event_type: str) -> bool:
    """Whether an endpoint listening to `event_types` gets `event_type` (empty: all but opt-in)."""
    event_types = list(event_types)
    if not event_types:
        return event_type not in OPT_IN
    return event_type in event_types


# --- input ------------------------------------------------------------------------------------

def validate_url(value: object, field: str = "url") -> str:
    """An http(s) URL of bounded length with a host and no credentials or fragment."""
    if not isinstance(value, str) or not value:
        raise ValidationFailed(f"{field} is required: an http:// or https:// URL.", field=field)
    check_url(value, field=field, schemes=SCHEMES, signed="deliveries are signed")
    return value


def validate_event_types(value: object, field: str = "event_types") -> list[str]:
    """A list of known event types without duplicates; None or [] means all (but opt-in ones)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValidationFailed(f"{field} must be a list of event types.", field=field)
    if len(value) > len(EVENT_TYPES):
        raise ValidationFailed(f"{field} has more entries than there are event types.", field=field)
    out: list[str] = []
    for item in value:
        if not isinstance(item, str) or item not in EVENT_TYPES:
            shown = repr(item)[:80]
            raise ValidationFailed(f"{field}: {shown} is not an event type; known: {', '.join(EVENT_TYPES)}.",
                                   field=field)
        if item not in out:
            out.append(item)
    return out


def validate_enabled(value: object, field: str = "enabled") -> bool:
    if not isinstance(value, bool):
        raise ValidationFailed(f"{field} must be true or false.", field=field)
    return value


# --- secrets and signatures ---------------------------------------------------------------------

def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_<base64>` secret."""
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not a whsec_<base64> secret") from None


def signature(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256(key, "<id>.<timestamp>.<body>")>`."""
    signed = f"{message_id}.{int(timestamp)}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signing_secrets(current: str, previous: str | None, previous_until: datetime | None,
                    now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and the previous one during its overlap."""
    if previous and previous_until is not None and now < previous_until:
        return [current, previous]
    return [current]


def signed_headers(secrets_: Iterable[str], message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The Standard Webhooks headers; one signature per secret, space-separated."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp)),
        "webhook-signature": " ".join(signature(s, message_id, timestamp, body) for s in secrets_),
        "content-type": "application/json",
    }


# --- the body -----------------------------------------------------------------------------------

# Internal payload keys that are not part of the public data (the reply's dedupe key).
# Ids in payloads (join_id, event_id of /v2/pals/{id}/meetings) are the API's own.
_PRIVATE_KEYS = frozenset({"key"})


def event_data(pal_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    """`data` of a webhook: the PAL, then the event's own fields with the API's ids."""
    data: dict[str, Any] = {"pal_id": pal_id}
    data.update({k: v for k, v in payload.items() if k not in _PRIVATE_KEYS and k != "pal_id"})
    return data


def body(event_type: str, at: datetime, data: dict[str, Any]) -> bytes:
    """The exact bytes sent (and signed): `{"type", "timestamp", "data"}`."""
    return json.dumps({"type": event_type, "timestamp": iso_z(at), "data": data},
                      separators=(",", ":"), default=str, ensure_ascii=False).encode()


# --- retries ------------------------------------------------------------------------------------

def backoff(attempts: int, *, rng: Callable[[], float] = random.random) -> timedelta:
    """After `attempts` failures: 5 s doubling to an hour, jittered into [d/2, d]."""
    return doubling(attempts, first=BACKOFF_FIRST_SECONDS, cap=BACKOFF_MAX_SECONDS, rng=rng)


def response_ok(status: int) -> bool:
    """Only a 2xx is a delivery; a redirect is not followed and counts as a failure."""
    return 200 <= status < 300
