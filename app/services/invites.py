"""Invite ingestion: from a stored raw message to a decision, a reply and a join plan.

Runs in the worker (arq job `ingest_message`). Every step re-reads PostgreSQL and
is idempotent, so a redelivered message or a re-run job changes nothing and sends
nothing twice.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

import asyncpg
import dns.resolver

from app import metrics
from app.config import get_settings
from app.domain.allowlist import is_allowed
from app.domain.calendar_state import ApplyResult, Outcome, StoredEvent, apply_message
from app.domain.decisions import Decision, decide, standing_decision
from app.domain.join_planning import no_join_reason
from app.domain.join_state import CancelReason
from app.domain.invites import InvalidCalendar, ParsedInvite, is_attendee, parse_calendar
from app.domain.mime import InvalidMessage, MailHeaders, extract_itip, read_headers
from app.domain.replies import build_reply, reply_address
from app.domain.sender_auth import (
    Evidence, evidence_from, is_authenticated, parse_authentication_results, signed_by, verify_dkim,
)
from app.domain.usernames import email_address
from app.db import engine
from app.services.events import record_event
from app.services.inbound import MAX_ATTEMPTS_REACHED, RECIPIENTS_GONE, end_failed, error_text, record_error
from app.services.joins import replan_event, stored_event
from app.services.outbox import enqueue_email
from app.services.pals import find_pal_by_address
from app.services.rows import json_value
from app.tables import CalendarEvent, InboundMessage, Pal

log = logging.getLogger(__name__)
HANDLED_METHODS = ("REQUEST", "CANCEL")
PAL_DELETED = "PAL deleted during ingestion"
DnsFunc = Callable[..., bytes | None]


def dns_txt(name: bytes | str, timeout: int = 2) -> bytes | None:
    """dkimpy's DNS hook, with a short timeout so a dead resolver cannot stall intake."""
    try:
        qname = name.decode() if isinstance(name, bytes) else name
        answer = dns.resolver.resolve(qname.rstrip("."), "TXT", lifetime=timeout)
        return b"".join(b"".join(r.strings) for r in answer)
    except Exception:
        return None


@dataclass(frozen=True)
class Envelope:
    """Who vouches for the message, worked out once per message."""

    headers: MailHeaders
    evidence: Evidence


def _envelope(raw: bytes, dnsfunc: DnsFunc | None) -> Envelope:
    settings = get_settings()
    headers = read_headers(raw)
    signed = verify_dkim(raw, dnsfunc=dnsfunc or dns_txt) if headers.dkim_present else []
    results = parse_authentication_results(headers.authentication_results, settings.trusted_authserv_ids)
    evidence = evidence_from(signed, results, from_addr=headers.from_addr, sender_addr=headers.sender_addr)
    return Envelope(headers=headers, evidence=evidence)


def strict_sender_auth() -> bool:
    """SENDER_AUTH: only `mark` (development) processes unauthenticated invites; any
    other value, a typo included, is strict."""
    return get_settings().sender_auth != "mark"


_mode_announced = False


def announce_sender_auth_mode() -> None:
    """One WARNING per process when invites are not held to sender authentication."""
    global _mode_announced
    if _mode_announced:
        return
    _mode_announced = True
    mode = get_settings().sender_auth
    if mode == "mark":
        log.warning("SENDER_AUTH=mark: unauthenticated invitations are processed (marked, never answered); "
                    "for development only, use SENDER_AUTH=strict in production")
    elif mode != "strict":
        log.warning("SENDER_AUTH=%r is neither strict nor mark: treated as strict", mode)


async def process_inbound(message_pk: int, *, now: datetime, dnsfunc: DnsFunc | None = None) -> dict[str, Any]:
    """Process one stored pending message, once; every outcome but a retryable failure ends it.

    It ends `processed` whatever the invite said (unreadable ones included), or `failed`:
    `recipients_gone` when no recipient PAL exists any more, or `max_attempts` when this
    was the MAX_INGEST_ATTEMPTS-th attempt and it failed (its error in `last_error`). An
    earlier failed attempt keeps its error and raises; the requeue cron tries again."""
    announce_sender_auth_mode()
    row = await InboundMessage.select().where(InboundMessage.id == message_pk).first()
    if row is None or row["status"] != "pending":  # processed, or failed: never again
        return {"skipped": True}
    counted = await InboundMessage.update({InboundMessage.attempts: InboundMessage.attempts + 1}).where(
        InboundMessage.id == message_pk).returning(InboundMessage.attempts)
    attempt = counted[0]["attempts"] if counted else row["attempts"] + 1
    raw = bytes(row["raw"])
    try:
        result, reached = await _process(raw, json_value(row["recipients"], []), now=now, dnsfunc=dnsfunc)
    except (InvalidMessage, InvalidCalendar) as exc:
        result, reached = {"ignored": f"unreadable: {exc}"}, None
    except Exception as exc:
        error = error_text(exc)
        if attempt < get_settings().max_ingest_attempts:
            await record_error(message_pk, error)
            raise  # arq logs it; the requeue cron hands the message out again
        await end_failed(message_pk, reason=MAX_ATTEMPTS_REACHED, now=now, last_error=error)
        metrics.count_invites({"failed": MAX_ATTEMPTS_REACHED})
        log.error("message %s (%s): failed (%s) after %d attempts, not retried: %s", message_pk,
                  row["message_id"], MAX_ATTEMPTS_REACHED, attempt, error, exc_info=exc)
        return {"failed": MAX_ATTEMPTS_REACHED, "error": error}
    if reached == 0:  # every recipient PAL was deleted before or during ingestion: nothing to retry
        await end_failed(message_pk, reason=RECIPIENTS_GONE, now=now, result=result)
        metrics.count_invites(result)
        log.warning("message %s (%s): failed (%s), no recipient PAL exists any more: %s", message_pk,
                    row["message_id"], RECIPIENTS_GONE, [o["recipient"] for o in result.get("outcomes", [])])
        return result
    log.info("message %s (%s): %s", message_pk, row["message_id"], result)
    await InboundMessage.update({
        InboundMessage.status: "processed", InboundMessage.processed_at: now, InboundMessage.result: result,
    }).where(InboundMessage.id == message_pk)
    metrics.count_invites(result)
    return result


async def _process(raw: bytes, recipients: list[str], *, now: datetime,
                   dnsfunc: DnsFunc | None) -> tuple[dict[str, Any], int | None]:
    """The message's result, and how many recipient PALs it reached (None: none was looked up)."""
    itip = extract_itip(raw)
    if itip is None:
        return {"ignored": "no iMIP calendar part"}, None
    if itip.method not in HANDLED_METHODS:
        return {"ignored": f"method {itip.method or 'missing'}"}, None
    invites = [i for i in parse_calendar(itip.data) if i.method in HANDLED_METHODS or not i.method]
    envelope = _envelope(raw, dnsfunc)
    outcomes: list[dict[str, Any]] = []
    seen: set[int] = set()
    for recipient in dict.fromkeys(r.strip().lower() for r in recipients):
        pal = await find_pal_by_address(recipient)
        if pal is None:
            outcomes.append({"recipient": recipient, "ignored": "no such PAL"})
            continue
        if pal["id"] in seen:  # one message is handled once per PAL
            continue
        seen.add(pal["id"])
        try:
            pal_outcomes = [{"recipient": recipient, "uid": invite.uid,
                             **await handle_invite(pal, invite, itip.method, envelope, now=now)}
                            for invite in invites]
        except asyncpg.ForeignKeyViolationError:
            # Deleted after the lookup: its rows are gone with it (ON DELETE CASCADE), so this
            # recipient is done; the others still get the invite. Any other FK failure is a fault.
            if await Pal.exists().where(Pal.id == pal["id"]):
                raise
            seen.discard(pal["id"])
            outcomes.append({"recipient": recipient, "ignored": PAL_DELETED})
            continue
        outcomes.extend(pal_outcomes)
    return {"method": itip.method, "outcomes": outcomes}, len(seen)


def _stored(row: dict[str, Any] | None) -> StoredEvent | None:
    return stored_event(row) if row else None


async def _lock(pal_pk: int, uid: str) -> None:
    # Serialises concurrent messages for the same event (e.g. a REQUEST and its CANCEL).
    await CalendarEvent.raw("SELECT pg_advisory_xact_lock({}, hashtext({}))", pal_pk, uid)


async def handle_invite(pal: dict[str, Any], invite: ParsedInvite, method: str, envelope: Envelope,
                        *, now: datetime) -> dict[str, Any]:
    """Apply one calendar object to one PAL: state, decision, reply and join plan."""
    settings = get_settings()
    method = invite.method or method
    organizer = invite.organizer
    if not organizer:
        return {"ignored": "no ORGANIZER"}
    authenticated = is_authenticated(organizer, envelope.evidence, settings.calendar_services)
    if strict_sender_auth() and not authenticated:
        log.warning("pal %s: dropped unauthenticated %s from %s", pal["pal_id"], method, organizer)
        return {"dropped": "unauthenticated"}
    pal_address = email_address(pal["username"], pal["email_domain"])
    async with engine().transaction():
        await _lock(pal["id"], invite.uid)
        row = await CalendarEvent.select().where(
            (CalendarEvent.pal == pal["id"]) & (CalendarEvent.uid == invite.uid)).first()
        result = apply_message(_stored(row), method=method, calendar=invite.calendar, uid=invite.uid,
                               organizer=organizer, pal_address=pal_address)
        if result.outcome in (Outcome.STALE, Outcome.IGNORED):
            return {"outcome": result.outcome.value, "reason": result.reason}
        if result.outcome == Outcome.SPOOF:
            await record_event(pal["id"], "invite_rejected", {
                "uid": invite.uid, "organizer": organizer, "reason": "organizer changed: possible spoof"},
                pal_id=pal["pal_id"])
            return {"outcome": "spoof"}
        decision = None
        if row is not None and (method == "CANCEL" or not invite.has_master):
            decision = standing_decision(row["decision"], row["reason"], authenticated)
        if decision is None:
            allowed = is_allowed(organizer, json_value(pal["allowlist"], []),
                                 sender_signed=signed_by(envelope.evidence, organizer))
            decision = decide(link=invite.link, allowed=allowed, authenticated=authenticated)
            note = no_join_reason(accepted=decision.decision == "accepted", all_day=invite.is_all_day)
            if note and invite.has_master:
                decision = dataclasses.replace(decision, reason=note)
        event_pk, previous = await _save(pal, invite, result, decision, envelope, authenticated, row, now)
    await _announce(pal, invite, method, result, decision, previous, event_pk)
    if method == "REQUEST" and result.outcome in (Outcome.CREATED, Outcome.UPDATED):
        await _queue_replies(pal, pal_address, invite, decision, envelope, now, authenticated=authenticated)
    plan = await replan_event(event_pk, now)
    return {"outcome": result.outcome.value, "decision": decision.decision, "authenticated": authenticated, **plan}


async def _save(pal, invite: ParsedInvite, result: ApplyResult, decision: Decision, envelope: Envelope,
                authenticated: bool, row: dict[str, Any] | None, now: datetime) -> tuple[int, str | None]:
    state = result.event
    assert state is not None
    cancelled_whole = result.outcome in (Outcome.CANCELLED, Outcome.REMOVED) or state.cancelled
    final = "cancelled" if cancelled_whole else decision.decision
    if cancelled_whole:  # the join planner cancels this event's joins with this reason
        reason = str(CancelReason.REMOVED_FROM_EVENT if result.outcome == Outcome.REMOVED else CancelReason.EVENT_CANCELLED)
    else:
        reason = decision.reason
    values = {
        CalendarEvent.organizer: state.organizer,
        CalendarEvent.sequence: state.sequence,
        CalendarEvent.dtstamp: state.dtstamp,
        CalendarEvent.ics: state.ics,
        CalendarEvent.cancelled: state.cancelled,
        CalendarEvent.cancelled_instances: sorted(state.cancelled_instances),
        CalendarEvent.decision: final,
        CalendarEvent.reason: reason,
        CalendarEvent.authenticated: authenticated,
        CalendarEvent.from_addr: envelope.headers.from_addr or "",
        CalendarEvent.sender_addr: envelope.headers.sender_addr or "",
        CalendarEvent.timezone_problems: invite.timezone_problems,
        CalendarEvent.updated_at: now,
    }
    if invite.method != "CANCEL" and invite.has_master:
        values.update({
            CalendarEvent.summary: invite.summary,
            CalendarEvent.description: invite.description[:10000],
            CalendarEvent.meeting_url: invite.link.url if invite.link else None,
            CalendarEvent.platform: invite.link.platform if invite.link else None,
        })
    if row is None:
        fields = {
            "summary": invite.summary, "description": invite.description[:10000],
            "meeting_url": invite.link.url if invite.link else None,
            "platform": invite.link.platform if invite.link else None,
            **{col._meta.name: value for col, value in values.items()},
        }
        created = await CalendarEvent.insert(
            CalendarEvent(pal=pal["id"], uid=invite.uid, created_at=now, **fields)
        ).returning(CalendarEvent.id)
        return created[0]["id"], None
    await CalendarEvent.update(values).where(CalendarEvent.id == row["id"])
    return row["id"], row["decision"]


async def _announce(pal, invite: ParsedInvite, method: str, result: ApplyResult, decision: Decision,
                    previous: str | None, event_pk: int) -> None:
    base = {"event_id": event_pk, "uid": invite.uid, "summary": invite.summary, "organizer": invite.organizer,
            "method": method, "outcome": result.outcome.value}
    await record_event(pal["id"], "invite_received", base, pal_id=pal["pal_id"])
    if result.outcome in (Outcome.CREATED, Outcome.UPDATED) and decision.decision != previous:
        await record_event(pal["id"], f"invite_{decision.decision}",
                           {**base, "reason": decision.reason, "meeting_url": invite.link.url if invite.link else None,
                            "platform": invite.link.platform if invite.link else None}, pal_id=pal["pal_id"])


async def _queue_replies(pal, pal_address: str, invite: ParsedInvite, decision: Decision,
                         envelope: Envelope, now: datetime, *, authenticated: bool) -> None:
    """One REPLY per answer that changed: keyed by UID, instance, SEQUENCE and PARTSTAT.

    Never to an unauthenticated organizer, in any SENDER_AUTH mode (backscatter)."""
    if not authenticated or not decision.send_reply:
        return
    if invite.schedule_agent == "CLIENT" or not is_attendee(invite, pal_address):
        return
    if (invite.status or "").upper() == "CANCELLED":
        return
    to = reply_address(invite)
    if to is None:
        log.warning("pal %s: no address to reply to for %s (organizer %r)", pal["pal_id"], invite.uid,
                    invite.organizer_uri or invite.organizer)
        return
    rids = [None] if invite.has_master else [c.get("RECURRENCE-ID").dt for c in invite.components
                                             if c.get("RECURRENCE-ID") is not None]
    for rid in rids:
        key = f"reply:{pal['pal_id']}:{invite.uid}:{rid or '-'}:{invite.sequence}:{decision.partstat}"
        message = build_reply(invite=invite, pal_address=pal_address, pal_name=pal["pal_name"],
                              partstat=decision.partstat, now=now, recurrence_id=rid,
                              comment=decision.comment, in_reply_to=envelope.headers.message_id)
        await enqueue_email(pal_pk=pal["id"], dedupe_key=key, mail_from=pal_address, rcpt_to=to,
                            message=message, now=now)
