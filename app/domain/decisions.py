"""What the PAL answers to an invitation, decided without I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from app.domain.meeting_links import MeetingLink
from app.domain.platforms import display_name, is_joinable, is_known, joinable_names, not_joinable_names

# Recognised platforms we cannot join yet, by key -> display name (from app/domain/platforms.py).
PLATFORM_NAMES = not_joinable_names()


class MeetingDecision(StrEnum):
    """What became of an invitation, as stored on the event (calendar_events.decision)."""

    ACCEPTED = "accepted"
    DECLINED = "declined"
    REJECTED = "rejected"    # the organizer is not on the allowlist
    CANCELLED = "cancelled"  # the organizer cancelled the whole event


@dataclass(frozen=True)
class Decision:
    decision: str            # accepted | declined | rejected
    partstat: str            # ACCEPTED | DECLINED
    reason: str | None       # shown to the PAL's owner
    comment: str | None      # sent to the organizer in the REPLY
    send_reply: bool


def decide(*, link: MeetingLink | None, allowed: bool, authenticated: bool) -> Decision:
    """Allowlist first, then the meeting link.

    Only an authenticated organizer is ever answered, whatever the answer: a reply to an
    unauthenticated address could be backscatter to a spoofed victim (SENDER_AUTH=mark
    processes such invites but stays silent)."""
    if not allowed:
        return Decision("rejected", "DECLINED", "organizer is not on the PAL's allowlist", None,
                        send_reply=authenticated)
    supported = joinable_names()
    if link is None or not is_known(link.platform):
        return Decision("declined", "DECLINED", f"no {supported} link in the invitation",
                        f"This invitation has no {supported} link, so there is nothing to join.", authenticated)
    if not is_joinable(link.platform):
        name = display_name(link.platform)
        return Decision("declined", "DECLINED", f"{name} is not supported yet",
                        f"{name} meetings are not supported yet; only {supported} is.", authenticated)
    return Decision("accepted", "ACCEPTED", None, None, authenticated)


def standing_decision(decision: str, reason: str | None, authenticated: bool) -> Decision | None:
    """The answer already given to an event, for messages that cannot change it.

    A CANCEL, or a REQUEST carrying only changed instances, often has no link of its
    own; deciding afresh from it would decline (and unplan) the whole series. None when
    there is no standing answer to keep (the event was cancelled as a whole)."""
    if decision == "accepted":
        return Decision("accepted", "ACCEPTED", reason, None, authenticated)
    if decision in ("declined", "rejected"):
        return Decision(decision, "DECLINED", reason, None, authenticated)
    return None
