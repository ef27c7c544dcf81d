"""DKIM verification with a locally generated key, Authentication-Results, vouching."""

from __future__ import annotations

import base64

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from app.domain.sender_auth import Evidence, is_authenticated, parse_authentication_results, verify_dkim

MSG = (
    b"From: Alice <alice@example.org>\r\nTo: pal@pals.example\r\nSubject: Invitation\r\n"
    b"Message-ID: <1@example.org>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nBEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n"
)


def _key() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    pub = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return pem, pub


@pytest.fixture(scope="module")
def keys() -> tuple[bytes, bytes]:
    return _key()


def _dns(records: dict[bytes, bytes]):
    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)
    return dnsfunc


def _sign(pem: bytes, domain: bytes = b"example.org", selector: bytes = b"sel") -> bytes:
    return dkim.sign(MSG, selector, domain, pem, include_headers=[b"from", b"to", b"subject", b"date"]) + MSG


def test_valid_signature(keys) -> None:
    pem, pub = keys
    dns = _dns({b"sel._domainkey.example.org.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)})
    assert verify_dkim(_sign(pem), dnsfunc=dns) == ["example.org"]


def test_tampered_body_fails(keys) -> None:
    pem, pub = keys
    dns = _dns({b"sel._domainkey.example.org.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)})
    assert verify_dkim(_sign(pem).replace(b"END:VCALENDAR", b"END:VCALENDAX"), dnsfunc=dns) == []


def test_wrong_key_and_missing_record_fail(keys) -> None:
    pem, _ = keys
    _, other_pub = _key()
    wrong = _dns({b"sel._domainkey.example.org.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(other_pub)})
    assert verify_dkim(_sign(pem), dnsfunc=wrong) == []
    assert verify_dkim(_sign(pem), dnsfunc=_dns({})) == []


def test_two_signatures_one_valid(keys) -> None:
    pem, pub = keys
    signed = _sign(pem)
    resigned = dkim.sign(signed, b"s2", b"relay.example", pem, include_headers=[b"from", b"subject"]) + signed
    dns = _dns({b"sel._domainkey.example.org.": b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)})
    assert verify_dkim(resigned, dnsfunc=dns) == ["example.org"]


@pytest.mark.parametrize("raw", [b"", b"garbage", b"DKIM-Signature: v=1; nonsense\r\n\r\nx", b"\xff\x00"])
def test_garbage_verifies_nothing(raw: bytes) -> None:
    assert verify_dkim(raw, dnsfunc=_dns({})) == []


def test_authentication_results_trusted_only() -> None:
    headers = [
        "mx.pals.example; dkim=pass (2048-bit key) header.d=Google.com header.i=@google.com header.s=20230601;"
        " spf=pass (mx.pals.example: domain of calendar-notification@google.com designates 1.2.3.4 as permitted)"
        " smtp.mailfrom=calendar-notification@google.com; dmarc=pass (p=REJECT) header.from=google.com",
        "mx.pals.example 1; dkim=fail header.d=evil.example; spf=softfail smtp.mailfrom=x@evil.example",
        "attacker.example; dkim=pass header.d=bank.example",
        "mx.pals.example; dkim=pass header.i=@sub.example.org",
    ]
    assert parse_authentication_results(headers, ["MX.pals.example"]) == [
        ("dkim", "pass", "google.com"), ("spf", "pass", "google.com"), ("dmarc", "pass", "google.com"),
        ("dkim", "pass", "sub.example.org"),
    ]
    assert parse_authentication_results(headers, []) == []


def test_authentication_results_junk() -> None:
    assert parse_authentication_results(["", ";;;", "mx; (((unclosed", "mx; dkim=pass"], ["mx"]) == []


@pytest.mark.parametrize(
    ("organizer", "vouched", "expected"),
    [
        ("alice@example.org", ["example.org"], True),
        ("alice@mail.example.org", ["example.org"], True),  # parent domain vouches
        ("alice@example.org", ["mail.example.org"], True),  # relaxed alignment: same organization
        ("alice@example.org", ["badexample.org"], False),
        ("alice@example.org", ["org"], False),  # a bare TLD vouches for nothing
        ("mailto:Alice@Example.ORG", ["EXAMPLE.org."], True),
        # A bare signature from a calendar service is not enough: the message must also
        # have the service's shape (tests/unit/test_alignment.py).
        ("alice@custom.example", ["google.com"], False),
        ("alice@custom.example", ["icloud.com"], False),
        ("alice@custom.example", ["outlook.com"], False),  # any outlook.com user could forge an ORGANIZER
        ("alice@custom.example", ["gmail.com"], False),
        ("alice@custom.example", [], False),
        ("", ["example.org"], False),
    ],
)
def test_is_authenticated(organizer: str, vouched: list[str], expected: bool) -> None:
    assert is_authenticated(organizer, vouched) is expected


def test_calendar_services_configurable() -> None:
    google = Evidence(signed=("google.com",), sender_addr="calendar-notification@google.com")
    assert is_authenticated("a@custom.example", google) is True
    assert is_authenticated("a@custom.example", google, calendar_services=()) is False
    own = Evidence(signed=("cal.example.net",), sender_addr="invites@example.net")
    assert is_authenticated("a@custom.example", own, calendar_services=["example.net"]) is True
