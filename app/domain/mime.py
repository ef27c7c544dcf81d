"""Find the iTIP calendar in an email and read the headers we need.

Uses the compat32 policy: about 12x cheaper than ``email.policy.default``
(notes/measured-costs.md) and we only need raw headers and decoded payloads.
The work is bounded (size, MIME depth, part count); anything beyond the
limits raises InvalidMessage, and garbage never raises anything else.
"""

from __future__ import annotations

import email
import re
from dataclasses import dataclass, field
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parseaddr

MAX_MESSAGE_BYTES = 25 * 1024 * 1024
MAX_DEPTH = 32
MAX_PARTS = 500
# The stdlib parser recurses per nesting level and hits RecursionError near
# 1,000 levels; refuse messages that could get there before parsing them.
MAX_MULTIPART_HEADERS = 2 * MAX_PARTS

CALENDAR_TYPES = ("text/calendar", "application/ics")
_METHOD_RE = re.compile(rb"^METHOD[ \t]*(?:;[^:\r\n]{0,200})?:[ \t]*([A-Za-z-]{1,32})[ \t]*\r?$", re.M | re.I)
_UNFOLD_RE = re.compile(rb"\r?\n[ \t]")
_MULTIPART_RE = re.compile(rb"multipart/", re.I)


class InvalidMessage(ValueError):
    """The message is too large, too deeply nested or has too many parts."""


@dataclass(frozen=True)
class ItipPart:
    """The calendar part of an iMIP message."""

    method: str  # METHOD from the calendar body (wins), else the MIME parameter; upper-case
    mime_method: str | None  # the Content-Type method parameter as sent, upper-case
    data: bytes  # decoded calendar bytes (transfer encoding removed)
    charset: str
    content_type: str
    filename: str | None = None
    copies: int = 0  # further calendar parts in the message (e.g. Google's application/ics copy)

    @property
    def text(self) -> str:
        """The calendar as text, decoded with the part's charset."""
        try:
            return self.data.decode(self.charset, errors="replace")
        except LookupError:
            return self.data.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class MailHeaders:
    """The headers the service looks at, decoded. Addresses are lower-case."""

    message_id: str | None
    from_addr: str | None
    from_name: str | None
    sender_addr: str | None
    reply_to: str | None
    to_addrs: list[str] = field(default_factory=list)
    subject: str = ""
    date: str | None = None
    in_reply_to: str | None = None
    authentication_results: list[str] = field(default_factory=list)
    dkim_present: bool = False


def storable(text: str) -> str:
    """Text as PostgreSQL can store it: mail may carry NUL (U+0000), PostgreSQL text cannot."""
    return text.replace("\x00", "\ufffd")


def _prepare(raw: bytes) -> bytes:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise InvalidMessage("message must be bytes")
    # NUL bytes in headers or 8-bit parts would fail every insert of what we read from them.
    raw = bytes(raw).replace(b"\x00", "\ufffd".encode())
    if len(raw) > MAX_MESSAGE_BYTES:
        raise InvalidMessage(f"message larger than {MAX_MESSAGE_BYTES} bytes")
    # Some stored messages start with blank lines, which would end the headers at once.
    raw = raw.lstrip(b" \t\r\n")
    if raw.startswith(b"From "):  # mbox separator line
        raw = raw.partition(b"\n")[2]
    return raw


def _parse(raw: bytes) -> Message:
    raw = _prepare(raw)
    if len(_MULTIPART_RE.findall(raw, 0, len(raw))) > MAX_MULTIPART_HEADERS:
        raise InvalidMessage("too many multipart parts")
    try:
        return email.message_from_bytes(raw, policy=policy.compat32)
    except RecursionError as exc:
        raise InvalidMessage("MIME structure too deep") from exc
    except Exception as exc:  # noqa: BLE001 - the parser is lenient; be safe on odd input
        raise InvalidMessage(f"unparseable message: {exc.__class__.__name__}") from exc


def iter_parts(msg: Message):
    """Leaf parts in document order, with limits; no recursion."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    count = 0
    while stack:
        part, depth = stack.pop()
        count += 1
        if count > MAX_PARTS:
            raise InvalidMessage(f"more than {MAX_PARTS} MIME parts")
        if depth > MAX_DEPTH:
            raise InvalidMessage(f"MIME nesting deeper than {MAX_DEPTH}")
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))
        else:
            yield part


def body_method(data: bytes) -> str | None:
    """The METHOD property of a calendar body (top-level, first one), upper-case."""
    head = data[:65536]
    if b"\n " in head or b"\n\t" in head:
        head = _UNFOLD_RE.sub(b"", head)
    m = _METHOD_RE.search(head)
    return m.group(1).decode("ascii").upper() if m else None


def _decode(part: Message) -> bytes:
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - broken base64 etc.
        data = None
    if isinstance(data, bytes):
        return data
    payload = part.get_payload()
    return payload.encode("utf-8", "replace") if isinstance(payload, str) else b""


def extract_itip(raw: bytes) -> ItipPart | None:
    """The iTIP part of a message, or None when it is not an iMIP message.

    A message is iMIP only when a text/calendar (or application/ics) part has
    a ``method`` Content-Type parameter; a plain .ics attachment is not an
    invitation. The body's METHOD wins over the MIME parameter (Google sends
    COUNTER as ``method=REPLY``). text/calendar is preferred over an
    application/ics copy, which is counted in ``copies``, never returned twice.
    """
    msg = _parse(raw)
    calendars: list[Message] = []
    for part in iter_parts(msg):
        if part.get_content_type() in CALENDAR_TYPES:
            calendars.append(part)
    with_method = [p for p in calendars if p.get_param("method")]
    if not with_method:
        return None
    with_method.sort(key=lambda p: p.get_content_type() != "text/calendar")  # stable
    chosen = with_method[0]
    data = _decode(chosen)
    mime_method = str(chosen.get_param("method")).strip().upper() or None
    method = body_method(data) or mime_method or ""
    try:
        filename = chosen.get_filename()
    except Exception:  # noqa: BLE001
        filename = None
    return ItipPart(
        method=method,
        mime_method=mime_method,
        data=data,
        charset=str(chosen.get_content_charset("utf-8") or "utf-8"),
        content_type=chosen.get_content_type(),
        filename=filename,
        copies=len(calendars) - 1,
    )


def _text(value: object) -> str:
    """Decode an RFC 2047 header value; never raises."""
    if value is None:
        return ""
    try:
        return storable(str(make_header(decode_header(str(value)))))  # =?utf-8?b?AA==?= is a NUL too
    except Exception:  # noqa: BLE001 - bad encoded-words: keep the raw text
        return storable(str(value))


def _addr(value: object) -> tuple[str | None, str | None]:
    if value is None:
        return None, None
    name, addr = parseaddr(_text(value))
    return (name or None), (addr.strip().lower() or None)


def read_headers(raw: bytes) -> MailHeaders:
    """Parse just the header block."""
    try:
        msg = BytesParser(policy=policy.compat32).parsebytes(_prepare(raw), headersonly=True)
    except InvalidMessage:
        raise
    except Exception as exc:  # noqa: BLE001
        raise InvalidMessage(f"unparseable headers: {exc.__class__.__name__}") from exc
    from_name, from_addr = _addr(msg.get("From"))
    _, sender = _addr(msg.get("Sender"))
    _, reply_to = _addr(msg.get("Reply-To"))
    to = [a.strip().lower() for _, a in getaddresses([_text(v) for v in msg.get_all("To", [])]) if a]
    mid = msg.get("Message-ID")
    irt = msg.get("In-Reply-To")
    return MailHeaders(
        message_id=str(mid).strip() if mid else None,
        from_addr=from_addr,
        from_name=from_name,
        sender_addr=sender,
        reply_to=reply_to,
        to_addrs=to,
        subject=" ".join(_text(msg.get("Subject")).split()),
        date=str(msg.get("Date")).strip() if msg.get("Date") else None,
        in_reply_to=str(irt).strip() if irt else None,
        authentication_results=[str(v) for v in msg.get_all("Authentication-Results", [])],
        dkim_present=msg.get("DKIM-Signature") is not None,
    )
