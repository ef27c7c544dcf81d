"""Build the iMIP REPLY (RFC 6047 / RFC 5546 3.2.3) a PAL sends as an attendee.

The VEVENT carries what organizers need to match it (sabre/vobject's
Broker, Google): UID, the event's own SEQUENCE (never incremented, see
tutao/tutanota#2807), DTSTAMP=now, DTSTART and DTEND/DURATION, SUMMARY,
RECURRENCE-ID for one instance, ORGANIZER and exactly one ATTENDEE.
"""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta, timezone
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid

import icalendar
from icalendar.prop import vCalAddress, vDDDTypes

from app.domain.invites import ParsedInvite, address
from app.domain.timezones import UnresolvedTime, to_utc, value_of

PRODID = "-//PAL Meetings//iMIP reply 1.0//EN"
PARTSTATS = {"ACCEPTED": "Accepted", "DECLINED": "Declined", "TENTATIVE": "Tentative"}
UTC = timezone.utc
# The organizer chose the title and names we echo: cap them, so a reply never carries
# kilobytes of someone else's text (subject, body line, display names, SUMMARY).
MAX_QUOTED_CHARS = 200
MAX_MESSAGE_ID_CHARS = 250


def _same_instant(a: date | datetime, b: date | datetime) -> bool:
    """Compare RECURRENCE-IDs as instants (or dates), never as strings."""
    if isinstance(a, datetime) != isinstance(b, datetime):
        da = a.date() if isinstance(a, datetime) else a
        db = b.date() if isinstance(b, datetime) else b
        return da == db
    try:
        return to_utc(a) == to_utc(b)
    except UnresolvedTime:
        return a == b


def _time_prop(prop: vDDDTypes, vtz_ids: set[str], used: set[str]) -> vDDDTypes | None:
    """Copy a time property; keep its TZID only when we can ship the VTIMEZONE."""
    value = value_of(prop)
    if not isinstance(value, date):
        return None  # unparseable in the invitation: leave it out
    tzid = prop.params.get("TZID")
    if isinstance(value, datetime) and value.tzinfo is not None:
        if tzid and str(tzid) in vtz_ids:
            used.add(str(tzid))
            return copy.deepcopy(prop)
        return vDDDTypes(value.astimezone(UTC))
    return copy.deepcopy(prop)


def _instance_value(master_start: vDDDTypes, rid: date | datetime) -> vDDDTypes:
    """The RECURRENCE-ID in the same form and zone as the master's DTSTART."""
    start = master_start.dt
    if not isinstance(start, datetime):
        return vDDDTypes(rid.date() if isinstance(rid, datetime) else rid)
    if not isinstance(rid, datetime):
        rid = datetime(rid.year, rid.month, rid.day, start.hour, start.minute, start.second, tzinfo=start.tzinfo)
    if start.tzinfo is None or rid.tzinfo is None:
        return vDDDTypes(rid)
    local = rid.astimezone(start.tzinfo)
    tzid = master_start.params.get("TZID")
    if tzid:
        prop = vDDDTypes(local.replace(tzinfo=None))
        prop.params["TZID"] = str(tzid)
        prop.dt = local
        return prop
    return vDDDTypes(local.astimezone(UTC))


def _pal_attendee(event: icalendar.Event, pal_address: str, pal_name: str | None, partstat: str) -> vCalAddress:
    """The PAL as listed in the invitation (same URI spelling), else a new entry."""
    found = None
    props = event.get("ATTENDEE")
    for prop in props if isinstance(props, list) else [props] if props is not None else []:
        if address(pal_address) in (address(prop), address(prop.params.get("EMAIL"))):
            found = prop
            break
    att = vCalAddress(str(found) if found is not None else f"mailto:{pal_address}")
    if found is not None:
        for key in ("CUTYPE", "ROLE"):
            if key in found.params:
                att.params[key] = found.params[key]
    if pal_name:
        att.params["CN"] = pal_name
    att.params["PARTSTAT"] = partstat
    return att


def build_reply_calendar(
    invite: ParsedInvite,
    *,
    pal_address: str,
    pal_name: str | None,
    partstat: str,
    now: datetime,
    recurrence_id: date | datetime | None = None,
    comment: str | None = None,
) -> icalendar.Calendar:
    """The METHOD:REPLY VCALENDAR for one event or one instance of it."""
    partstat = partstat.upper()
    if partstat not in PARTSTATS:
        raise ValueError(f"unsupported PARTSTAT {partstat!r}")
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if not invite.components:
        raise ValueError("invite has no components")

    source = invite.components[0]
    rid_prop: vDDDTypes | None = None
    if recurrence_id is not None:
        override = next(
            (c for c in invite.components if isinstance(value_of(c.get("RECURRENCE-ID")), date)
             and _same_instant(value_of(c["RECURRENCE-ID"]), recurrence_id)),
            None,
        )
        if override is not None:
            source = override
            rid_prop = override["RECURRENCE-ID"]
        elif invite.master is not None and isinstance(value_of(invite.master.get("DTSTART")), date):
            rid_prop = _instance_value(invite.master["DTSTART"], recurrence_id)
        else:
            raise ValueError("no master to derive the instance from")
    elif source.get("RECURRENCE-ID") is not None:
        rid_prop = source["RECURRENCE-ID"]  # the message only carried this instance

    vtz = {str(t.get("TZID")): t for t in invite.calendar.walk("VTIMEZONE")}
    used: set[str] = set()
    ev = icalendar.Event()
    ev.add("UID", invite.uid)
    seq = source.get("SEQUENCE")
    seq_value = invite.sequence if source is invite.components[0] or seq is None else _seq_int(seq)
    if -(2**31) <= seq_value < 2**31:
        ev.add("SEQUENCE", seq_value)
    else:
        # Echo out-of-range values (seen from Google) verbatim; vInt refuses them.
        ev["SEQUENCE"] = icalendar.vText(str(seq_value))
    ev.add("DTSTAMP", now.astimezone(UTC))

    def put(name: str, prop: object) -> None:
        value = _time_prop(prop, set(vtz), used) if prop is not None else None
        if value is not None:
            ev[name] = value

    start_v, end_v = value_of(source.get("DTSTART")), value_of(source.get("DTEND"))
    duration = value_of(source.get("DURATION"))
    if rid_prop is not None and source is invite.master:
        # An instance of the master: its own start, the master's length.
        put("DTSTART", rid_prop)
        if isinstance(start_v, date) and isinstance(end_v, date) and type(start_v) is type(end_v):
            ev["DURATION"] = icalendar.vDuration(end_v - start_v)
        elif isinstance(duration, timedelta):
            ev["DURATION"] = icalendar.vDuration(duration)
    else:
        put("DTSTART", source.get("DTSTART"))
        if isinstance(end_v, date):
            put("DTEND", source.get("DTEND"))
        elif isinstance(duration, timedelta):
            ev["DURATION"] = icalendar.vDuration(duration)
    if rid_prop is not None:
        put("RECURRENCE-ID", rid_prop)
    if source.get("SUMMARY") is not None:
        ev.add("SUMMARY", _capped(str(source["SUMMARY"])))
    org = source.get("ORGANIZER") or (invite.master or source).get("ORGANIZER")
    if org is not None:
        ev["ORGANIZER"] = copy.deepcopy(org[0] if isinstance(org, list) else org)
    ev.add("ATTENDEE", _pal_attendee(source, pal_address, pal_name, partstat))
    if comment:
        ev.add("COMMENT", comment)

    cal = icalendar.Calendar()
    cal.add("PRODID", PRODID)
    cal.add("VERSION", "2.0")
    cal.add("CALSCALE", "GREGORIAN")
    cal.add("METHOD", "REPLY")
    for tzid in sorted(used):
        cal.add_component(copy.deepcopy(vtz[tzid]))
    cal.add_component(ev)
    return cal


def _seq_int(value: object) -> int:
    try:
        return int(value)  # vInt and vBroken of digits both convert
    except (TypeError, ValueError):
        return 0


def reply_address(invite: ParsedInvite) -> str | None:
    """Where the REPLY goes, as an ASCII address (IDNA domain); None when there is none."""
    to_addr = invite.organizer_uri or invite.organizer or ""
    local, _, domain = to_addr.rpartition("@")
    if not local or not domain or not local.isascii():  # an SMTPUTF8 local part: no ASCII form
        return None
    try:
        domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    return f"{local}@{domain}"


def _one_line(text: str | None) -> str:
    """Header-safe text: a newline in a header value would start a new header (or fail)."""
    return " ".join((text or "").split())


def _capped(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """At most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def build_reply(
    *,
    invite: ParsedInvite,
    pal_address: str,
    pal_name: str | None,
    partstat: str,
    now: datetime,
    recurrence_id: date | datetime | None = None,
    comment: str | None = None,
    in_reply_to: str | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """The complete iMIP REPLY email from the PAL to the organizer.

    To is the ORGANIZER URI (for iCloud the imip.me.com relay, which is
    where iCloud expects replies). Raises ValueError when there is no
    organizer or the arguments are invalid.
    """
    to_addr = reply_address(invite)
    if to_addr is None:
        raise ValueError("invite has no organizer address to reply to")
    cal = build_reply_calendar(
        invite, pal_address=pal_address, pal_name=pal_name, partstat=partstat,
        now=now, recurrence_id=recurrence_id, comment=comment,
    )
    verb = PARTSTATS[partstat.upper()]
    summary = _capped(_one_line(invite.summary)) or "(no title)"
    domain = pal_address.rsplit("@", 1)[-1]

    msg = EmailMessage()
    msg["From"] = formataddr((_capped(_one_line(pal_name)), pal_address))
    msg["To"] = formataddr((_capped(_one_line(invite.organizer_name)), to_addr))
    msg["Subject"] = f"{verb}: {summary}"
    msg["Date"] = format_datetime(now)
    # make_msgid without a domain would look up the host name (I/O).
    msg["Message-ID"] = message_id or make_msgid(domain=domain)
    if 0 < len(_one_line(in_reply_to)) <= MAX_MESSAGE_ID_CHARS:  # a longer one is not a real Message-ID
        msg["In-Reply-To"] = msg["References"] = _one_line(in_reply_to)
    lines = [f"{pal_name or pal_address} has {verb.lower()} this invitation: {summary}"]
    if invite.start is not None:
        lines.append(f"When: {invite.start:%Y-%m-%d %H:%M} UTC")
    if comment:
        lines += ["", comment]
    msg.set_content("\n".join(lines) + "\n")
    msg.add_alternative(cal.to_ical(), maintype="text", subtype="calendar", cte="base64")
    part = msg.get_payload()[-1]
    # Set exactly as Google and Outlook do; some organizers ignore quoted forms.
    part.replace_header("Content-Type", "text/calendar; method=REPLY; charset=UTF-8")
    return msg
