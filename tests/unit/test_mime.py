"""MIME walking: detection, encodings, duplicates, limits, garbage."""

import base64
import os
import quopri

import pytest

from app.domain.mime import InvalidMessage, MAX_PARTS, extract_itip, read_headers

CAL = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\nMETHOD:{m}\r\n"
    "BEGIN:VEVENT\r\nUID:u1\r\nDTSTAMP:20250101T000000Z\r\nDTSTART:20250102T100000Z\r\n"
    "SUMMARY:Caf\u00e9\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


def _msg(body_parts: list[str], outer: str = "multipart/alternative") -> bytes:
    head = (
        "From: Alice <alice@example.org>\r\nTo: pal@pals.example\r\nSubject: =?UTF-8?Q?Caf=C3=A9?=\r\n"
        "Message-ID: <m1@example.org>\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: {outer}; boundary="B"\r\n\r\n'
    )
    return (head + "".join(f"--B\r\n{p}\r\n" for p in body_parts) + "--B--\r\n").encode("utf-8")


TEXT = "Content-Type: text/plain; charset=utf-8\r\n\r\nhello"


def _cal_part(ctype: str, body: str, cte: str = "7bit", extra: str = "") -> str:
    if cte == "base64":
        body = base64.encodebytes(body.encode()).decode()
    elif cte == "quoted-printable":
        body = quopri.encodestring(body.encode()).decode()
    return f"Content-Type: {ctype}\r\nContent-Transfer-Encoding: {cte}\r\n{extra}\r\n{body}"


@pytest.mark.parametrize("cte", ["7bit", "base64", "quoted-printable"])
def test_encodings(cte: str) -> None:
    raw = _msg([TEXT, _cal_part('text/calendar; charset="UTF-8"; method=REQUEST', CAL.format(m="REQUEST"), cte)])
    part = extract_itip(raw)
    assert part is not None and part.method == "REQUEST" and part.mime_method == "REQUEST"
    assert "SUMMARY:Caf\u00e9" in part.text
    assert part.data.startswith(b"BEGIN:VCALENDAR")


def test_no_method_param_is_not_imip() -> None:
    raw = _msg([TEXT, _cal_part('text/calendar; name="event.ics"', CAL.format(m="REQUEST"), extra="Content-Disposition: attachment\r\n")], "multipart/mixed")
    assert extract_itip(raw) is None


def test_plain_text_message_is_not_imip() -> None:
    assert extract_itip(b"From: a@b.c\r\nSubject: x\r\n\r\nhello\r\n") is None


def test_body_method_wins_over_content_type() -> None:
    raw = _msg([TEXT, _cal_part("text/calendar; method=REPLY", CAL.format(m="COUNTER"))])
    part = extract_itip(raw)
    assert (part.method, part.mime_method) == ("COUNTER", "REPLY")


def test_inline_plus_attachment_copy_counted_once() -> None:
    inner = (
        'Content-Type: multipart/alternative; boundary="A"\r\n\r\n'
        f"--A\r\n{TEXT}\r\n--A\r\n{_cal_part('text/calendar; charset=UTF-8; method=REQUEST', CAL.format(m='REQUEST'))}\r\n--A--"
    )
    attach = _cal_part('application/ics; name="invite.ics"', CAL.format(m="REQUEST").replace("Caf\u00e9", "Copy"), "base64",
                       'Content-Disposition: attachment; filename="invite.ics"\r\n')
    part = extract_itip(_msg([inner, attach], "multipart/mixed"))
    assert part.content_type == "text/calendar"
    assert part.copies == 1
    assert "Caf\u00e9" in part.text  # the inline part, not the attachment


def test_application_ics_with_method_alone_is_imip() -> None:
    raw = _msg([TEXT, _cal_part("application/ics; method=CANCEL", CAL.format(m="CANCEL"), "base64")], "multipart/mixed")
    assert extract_itip(raw).method == "CANCEL"


def test_multipart_related_nesting() -> None:
    alt = (
        'Content-Type: multipart/alternative; boundary="A"\r\n\r\n'
        f"--A\r\n{TEXT}\r\n--A\r\n{_cal_part('text/calendar; method=REQUEST', CAL.format(m='REQUEST'), 'base64')}\r\n--A--"
    )
    img = "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo="
    part = extract_itip(_msg([alt, img], "multipart/related"))
    assert part is not None and part.method == "REQUEST"


def _nested(depth: int) -> bytes:
    head = b"From: a@b.c\r\nMIME-Version: 1.0\r\n"
    body = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(depth))
    body += b"Content-Type: text/calendar; method=REQUEST\r\n\r\nBEGIN:VCALENDAR\r\nMETHOD:REQUEST\r\nEND:VCALENDAR\r\n"
    body += b"".join(b"--b%d--\r\n" % i for i in reversed(range(depth)))
    return head + body


@pytest.mark.parametrize("depth", [200, 5000])
def test_deep_nesting_is_rejected_cleanly(depth: int) -> None:
    with pytest.raises(InvalidMessage):
        extract_itip(_nested(depth))


def test_moderate_nesting_is_fine() -> None:
    assert extract_itip(_nested(5)).method == "REQUEST"


def test_too_many_parts() -> None:
    parts = [TEXT] * (MAX_PARTS + 5)
    with pytest.raises(InvalidMessage):
        extract_itip(_msg(parts, "multipart/mixed"))


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff\xfe garbage \x80\x81", os.urandom(4096), b"Content-Type: multipart/mixed; boundary=\r\n\r\n--\r\n",
     b"Content-Type: text/calendar; method=REQUEST\r\nContent-Transfer-Encoding: base64\r\n\r\n!!!not base64!!!",
     b"\n\n\n", b"From nobody Mon Jan 1\r\nSubject: x\r\n\r\nbody"],
)
def test_garbage_never_raises_unexpected(raw: bytes) -> None:
    try:
        extract_itip(raw)
        read_headers(raw)
    except InvalidMessage:
        pass


def test_non_bytes_is_invalid() -> None:
    with pytest.raises(InvalidMessage):
        extract_itip("not bytes")  # type: ignore[arg-type]


def test_leading_blank_line_is_tolerated() -> None:
    raw = b"\r\n  \r\n" + _msg([TEXT, _cal_part("text/calendar; method=REQUEST", CAL.format(m="REQUEST"))])
    assert extract_itip(raw).method == "REQUEST"
    assert read_headers(raw).from_addr == "alice@example.org"


def test_read_headers() -> None:
    raw = (
        b"DKIM-Signature: v=1; d=example.org; s=s; h=from; b=x; bh=y\r\n"
        b"Authentication-Results: mx.pals.example; dkim=pass header.d=example.org\r\n"
        b"Authentication-Results: other; spf=fail\r\n"
        b"From: =?UTF-8?Q?Al=C3=AFce?= <Alice@Example.ORG>\r\nSender: Google Calendar <calendar-notification@google.com>\r\n"
        b"Reply-To: 2_abc@imip.me.com\r\nTo: PAL <pal@pals.example>, other@x.org\r\nSubject: =?UTF-8?Q?Invitation=3A_Caf=C3=A9?=\r\n"
        b"Message-ID: <abc@example.org>\r\nIn-Reply-To: <prev@x>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody"
    )
    h = read_headers(raw)
    assert h.from_addr == "alice@example.org" and h.from_name == "Al\u00efce"
    assert h.sender_addr == "calendar-notification@google.com"
    assert h.reply_to == "2_abc@imip.me.com"
    assert h.to_addrs == ["pal@pals.example", "other@x.org"]
    assert h.subject == "Invitation: Caf\u00e9"
    assert h.message_id == "<abc@example.org>" and h.in_reply_to == "<prev@x>"
    assert len(h.authentication_results) == 2 and h.dkim_present
    assert not read_headers(b"From: a@b.c\r\n\r\nx").dkim_present
