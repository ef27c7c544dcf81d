"""The join's life, defined once: statuses, why a join ended, event kinds, transitions.

Pure, no I/O. The service that owns join state (app/services/joins.py), the
planner, conversations, workers and subscriptions all use these names, so a status
or an event kind is spelled in exactly one place. Values are ``StrEnum`` members:
they are stored, logged and sent over the APIs as their plain strings.
"""

from __future__ import annotations

from enum import StrEnum


class JoinStatus(StrEnum):
    SCHEDULED = "scheduled"      # planned; a queue job runs it at join_at
    DISPATCHING = "dispatching"  # a worker claimed it and is starting the browser
    JOINING = "joining"          # the browser is on the Meet's pre-join page
    WAITING_ROOM = "waiting_room"
    IN_CALL = "in_call"
    LEFT = "left"                # the bot was in the meeting and left
    FAILED = "failed"
    CANCELLED = "cancelled"      # never ran: unplanned before its time


ACTIVE = frozenset({JoinStatus.DISPATCHING, JoinStatus.JOINING, JoinStatus.WAITING_ROOM, JoinStatus.IN_CALL})
LIVE = ACTIVE | {JoinStatus.SCHEDULED}
TERMINAL = frozenset(JoinStatus) - LIVE


class CancelReason(StrEnum):
    """Why a join that had not run was cancelled (or a running bot asked to leave)."""

    EVENT_CANCELLED = "event_cancelled"            # the organizer cancelled the whole event
    OCCURRENCE_CANCELLED = "occurrence_cancelled"  # a CANCEL or EXDATE for this instance
    REMOVED_FROM_EVENT = "removed_from_event"      # the PAL is no longer an attendee
    RESCHEDULED = "rescheduled"                    # a running bot's occurrence moved
    LINK_CHANGED = "link_changed"                  # a running bot's meeting link changed
    DUPLICATE = "duplicate"                        # another join already covers this meeting
    DECLINED = "declined"                          # the invitation is no longer accepted
    ENDED_BY_API = "ended_by_api"                  # POST /v2/conversations/{id}/end


class FailReason(StrEnum):
    """Failures decided by the service itself; the bot adds its own (workers/meet_bot/models.py)."""

    MISSED = "missed"              # the occurrence ended before any bot could be sent
    WORKER_LOST = "worker_lost"    # the worker died and the meeting is over
    UNSUPPORTED_PLATFORM = "unsupported_platform"  # no bot joins this platform (workers/bots.py)


class LeftReason(StrEnum):
    """Why a bot that was in the meeting left (status left); reported by the bot."""

    MEETING_ENDED = "meeting_ended"
    REMOVED = "removed"
    EVERYONE_LEFT = "everyone_left"
    END_TIME_REACHED = "end_time_reached"
    STOPPED = "stopped"


class BotFailReason(StrEnum):
    """Why a bot could not get into, or stay in, the meeting (status failed); reported by the bot."""

    DENIED = "denied"
    NO_RESPONSE = "no_response"
    BLOCKED = "blocked"
    INVALID_MEETING = "invalid_meeting"
    WAITING_ROOM_TIMEOUT = "waiting_room_timeout"
    BROWSER_CRASH = "browser_crash"
    JOIN_BUTTON_NOT_FOUND = "join_button_not_found"
    SIGN_IN_REQUIRED = "sign_in_required"
    MEETING_UNREACHABLE = "meeting_unreachable"


class RequeueReason(StrEnum):
    """Why a join that had a bot went back to scheduled: the next run rejoins, exactly once."""

    WORKER_LOST = "redispatched_after_worker_loss"  # its bot's lease expired
    WORKER_RESTARTED = "worker_restarted"           # its worker shut down mid-call
    LEASE_LOST = "lease_lost"                       # the bot left because it could not keep its lease


class NotPlannedReason(StrEnum):
    """Why an occurrence that could be joined gets no join: bounds on what one invitation
    or PAL may make the shared workers do. Shown in the meeting view, never silently dropped."""

    SERIES_DAILY_CAP = "series_daily_cap"  # the series has more occurrences that day than allowed
    PAL_JOIN_CAP = "pal_join_cap"          # the PAL already holds as many planned joins as allowed
    OVERLAP = "overlap"                    # the PAL is already planned into another meeting then
    DUPLICATE = "duplicate"                # another event already takes it into this very meeting


# A failure with one of these reasons never reached the meeting.
FAILED_BEFORE_DISPATCH = frozenset({FailReason.MISSED, FailReason.UNSUPPORTED_PLATFORM})


class EventKind(StrEnum):
    """Kinds of rows in the PAL event log that concern joins."""

    JOIN_SCHEDULED = "join_scheduled"
    JOIN_RESCHEDULED = "join_rescheduled"
    JOIN_CANCELLED = "join_cancelled"
    JOIN_STOP_REQUESTED = "join_stop_requested"
    JOINS_NOT_PLANNED = "joins_not_planned"  # an event's unplanned occurrences changed
    # The full pipeline in a meeting (workers/participant.py); payloads carry conversation_id.
    LLM_UNAVAILABLE = "llm_unavailable"  # a turn got no answer: reason says why (never a key)
    TTS_UNAVAILABLE = "tts_unavailable"  # the PAL's voice endpoint failed; it stayed quiet
    CAPTIONS_UNAVAILABLE = "captions_unavailable"  # the PAL cannot hear (captions off)
    NOTES_READY = "notes_ready"
    NOTES_FAILED = "notes_failed"
    WEBHOOK_FAILING = "webhook_failing"  # a webhook delivery failed for 3 days (docs/webhooks.md)


# Every reason a join's status can carry, in one place; APIs show anything else (free text
# from an older version, an operator's note) as "other" beside the stored text.
JOIN_REASONS: tuple[str, ...] = tuple(dict.fromkeys(
    str(r) for group in (CancelReason, FailReason, BotFailReason, LeftReason, RequeueReason) for r in group))

# A reason outside JOIN_REASONS: an unexpected error of a bot run ("error: <text>"), or anything else.
ERROR_REASON = "error"
OTHER_REASON = "other"
JOIN_REASON_CODES = (*JOIN_REASONS, ERROR_REASON, OTHER_REASON)


def reason_code(reason: str | None) -> str | None:
    """The closed-set code of a stored reason (the APIs' JoinReason); the text itself stays as detail."""
    if not reason:
        return None
    if reason in JOIN_REASONS:
        return reason
    return ERROR_REASON if reason.startswith("error:") else OTHER_REASON


# Every kind of row in the PAL event log: invitations, replies, join statuses and join events.
INVITE_EVENT_KINDS = ("invite_received", "invite_accepted", "invite_declined", "invite_rejected")
REPLY_EVENT_KINDS = ("reply_sent", "reply_failed")


def event_kinds() -> tuple[str, ...]:
    statuses = (str(s) for s in JoinStatus if s != JoinStatus.CANCELLED)  # cancelled is join_cancelled
    return tuple(dict.fromkeys((*INVITE_EVENT_KINDS, *(str(k) for k in EventKind), *statuses, *REPLY_EVENT_KINDS)))


def event_kind_for(status: JoinStatus | str) -> str:
    """The event logged when a join enters `status`: the status itself, except cancellation."""
    return EventKind.JOIN_CANCELLED if status == JoinStatus.CANCELLED else str(status)


def status_of_event(kind: str, payload_status: str | None) -> str | None:
    """The join status an event announces (subscriptions turn events back into statuses)."""
    if payload_status:
        return payload_status
    return {EventKind.JOIN_SCHEDULED: JoinStatus.SCHEDULED, EventKind.JOIN_RESCHEDULED: JoinStatus.SCHEDULED,
            EventKind.JOIN_CANCELLED: JoinStatus.CANCELLED}.get(kind)


def went_to_meeting(status: str, reason: str | None) -> bool:
    """Did a bot really run for this join? Only then does it block planning the same target again.

    A cancelled join never ran, and a missed one was never sent: an organizer who
    re-invites the PAL, or restores an EXDATE'd day, gets a new join."""
    if status == JoinStatus.LEFT:
        return True
    return status == JoinStatus.FAILED and reason not in FAILED_BEFORE_DISPATCH
