"""Which signature vouches for which organizer: DMARC-style alignment, and the calendar
services that really send for other domains, recognised by the shape of their messages
(security review, issue 10, items 2 and 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.domain.allowlist import is_allowed
from app.domain.invites import parse_calendar
from app.domain.mime import extract_itip, read_headers
from app.domain.sender_auth import (
    DEFAULT_CALENDAR_SERVICES,
    Evidence,
    aligned,
    evidence_from,
    is_authenticated,
    organizational_domain,
    sending_service,
    signed_by,
)

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "corpus" / "invites"
GOOGLE_SENDER = "calendar-notification@google.com"


@pytest.mark.parametrize(("domain", "org"), [
    ("acme.com", "acme.com"),
    ("mail.acme.com", "acme.com"),
    ("A.B.Mail.ACME.com.", "acme.com"),
    ("calendar.google.com", "google.com"),
    ("example.co.uk", "example.co.uk"),
    ("mail.example.co.uk", "example.co.uk"),
    ("shop.example.com.au", "example.com.au"),
    ("bluedev.onmicrosoft.com", "bluedev.onmicrosoft.com"),  # O365 tenants are separate organizations
    ("x.bluedev.mail.onmicrosoft.com", "bluedev.mail.onmicrosoft.com"),
    ("com", None), ("co.uk", None), ("onmicrosoft.com", None), ("", None), ("a..com", None),
])
def test_organizational_domain(domain: str, org: str | None) -> None:
    assert organizational_domain(domain) == org


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("acme.com", "acme.com", True),
    ("mail.acme.com", "acme.com", True),
    ("acme.com", "eu.mail.acme.com", True),
    ("acme.com", "acme.co.uk", False),
    ("notacme.com", "acme.com", False),
    ("outlook.com", "acme.com", False),
    ("a.co.uk", "b.co.uk", False),
    ("one.onmicrosoft.com", "two.onmicrosoft.com", False),
    ("com", "com", False),
])
def test_alignment(a: str, b: str, expected: bool) -> None:
    assert aligned(a, b) is expected


def test_free_mail_signature_vouches_only_for_its_own_accounts() -> None:
    """Item 4: d=outlook.com authenticated boss@acme.com, so any free account could forge one."""
    for provider in ("outlook.com", "hotmail.com", "live.com", "gmail.com"):
        ev = Evidence(signed=(provider,), from_addr=f"attacker@{provider}")
        assert is_authenticated("boss@acme.com", ev) is False, provider
        assert is_authenticated(f"someone@{provider}", ev) is True, provider
    # Not even when an operator lists them: they are refused as services.
    listed = ("outlook.com", "hotmail.com", "live.com", "gmail.com")
    assert is_authenticated("boss@acme.com", Evidence(signed=("outlook.com",), from_addr="x@outlook.com"),
                            listed) is False


def test_default_services_are_the_ones_the_corpus_shows() -> None:
    assert set(DEFAULT_CALENDAR_SERVICES) == {"google.com", "icloud.com"}


def test_google_calendar_shape_vouches_for_any_organizer() -> None:
    google = Evidence(signed=("google.com",), from_addr="boss@acme.com", sender_addr=GOOGLE_SENDER)
    assert sending_service(google) == "Google Calendar"
    assert is_authenticated("boss@acme.com", google) is True
    # From: calendar-notification@google.com with the organizer in Reply-To: the newer layout.
    assert is_authenticated("boss@acme.com", Evidence(signed=("google.com",), from_addr=GOOGLE_SENDER)) is True
    # calendar.google.com names the same service.
    assert is_authenticated("boss@acme.com", google, ["calendar.google.com"]) is True


@pytest.mark.parametrize("evidence", [
    Evidence(signed=("google.com",), from_addr="boss@acme.com"),                 # signed, no service shape
    Evidence(signed=("google.com",), from_addr="x@google.com", sender_addr="drive-shares-noreply@google.com"),
    Evidence(signed=("gmail.com",), from_addr="x@gmail.com", sender_addr=GOOGLE_SENDER),  # not Google's key
    Evidence(signed=("evil.example",), sender_addr=GOOGLE_SENDER),               # shape forged, wrong key
    Evidence(spf=("google.com",), sender_addr=GOOGLE_SENDER),                    # SPF is not a signature
    Evidence(signed=("google.com.evil.example",), sender_addr=GOOGLE_SENDER),
    Evidence(signed=("icloud.com",), from_addr="someone@icloud.com"),            # an iCloud mailbox, not the calendar
    Evidence(signed=("insideicloud.icloud.com",), from_addr="someone@icloud.com"),
])
def test_shapes_that_do_not_vouch_for_another_domain(evidence: Evidence) -> None:
    assert sending_service(evidence) is None
    assert is_authenticated("boss@acme.com", evidence) is False


def test_services_can_be_switched_off_or_added() -> None:
    google = Evidence(signed=("google.com",), sender_addr=GOOGLE_SENDER)
    assert is_authenticated("boss@acme.com", google, calendar_services=()) is False
    own = Evidence(signed=("cal.example.net",), from_addr="calendar@cal.example.net")
    assert is_authenticated("boss@acme.com", own, calendar_services=["cal.example.net"]) is True
    assert is_authenticated("boss@acme.com", own, calendar_services=[]) is False
    # Its signature alone (another sender address) is not the service's shape.
    other = Evidence(signed=("cal.example.net",), from_addr="someone@elsewhere.example")
    assert is_authenticated("boss@acme.com", other, calendar_services=["cal.example.net"]) is False


def test_relaxed_alignment_and_spf() -> None:
    assert is_authenticated("boss@acme.com", Evidence(signed=("mail.acme.com",))) is True
    assert is_authenticated("boss@eu.acme.com", Evidence(signed=("acme.com",))) is True
    assert is_authenticated("boss@acme.com", Evidence(spf=("bounces.acme.com",))) is True
    assert is_authenticated("boss@acme.com", Evidence(signed=("co.uk", "com"))) is False
    assert is_authenticated("not-an-address", Evidence(signed=("acme.com",))) is False


def test_evidence_from_dkim_and_trusted_results() -> None:
    ev = evidence_from(["Google.com"], [("dkim", "pass", "acme.com"), ("dmarc", "pass", "acme.com"),
                                        ("spf", "pass", "bounce.example")],
                       from_addr="Boss@Acme.com", sender_addr=None)
    assert ev == Evidence(signed=("google.com", "acme.com"), spf=("bounce.example",), from_addr="boss@acme.com")
    assert signed_by(ev, "forwarding-noreply@google.com") and signed_by(ev, "boss@acme.com")
    assert not signed_by(ev, "x@bounce.example")  # SPF is not a signature


def test_forwarding_address_needs_googles_signature() -> None:
    """Item 2: forwarding-noreply@google.com passed any allowlist, unauthenticated."""
    fwd = "forwarding-noreply@google.com"
    assert is_allowed(fwd, ["boss@acme.com"]) is False
    assert is_allowed(fwd, ["boss@acme.com"], sender_signed=signed_by(Evidence(signed=("evil.example",)), fwd)) is False
    assert is_allowed(fwd, ["boss@acme.com"], sender_signed=signed_by(Evidence(signed=("google.com",)), fwd)) is True
    assert is_allowed(fwd, ["boss@acme.com"], sender_signed=signed_by(
        evidence_from([], [("dkim", "pass", "google.com")]), fwd)) is True
    assert is_allowed(fwd, []) is True  # an empty allowlist admits anyone, as before


def _corpus(name: str) -> bytes:
    path = CORPUS / name
    if not path.is_file():
        pytest.skip("corpus not present")
    return path.read_bytes()


@pytest.mark.parametrize(("name", "signer", "service"), [
    ("google-invite-2012-sender-header.eml", "google.com", "Google Calendar"),
    ("google-counter-ct-method-reply-mismatch.eml", "google.com", "Google Calendar"),
    ("icloud-invite-fr.eml", "insideicloud.icloud.com", "iCloud Calendar"),
    ("o365-invite-multipart-related-inline-image.eml", "outlook.com", None),
    ("o365-teams-invite-romance.eml", "bluedev.onmicrosoft.com", None),
])
def test_real_invitations(name: str, signer: str, service: str | None) -> None:
    """The corpus' signers (their keys are long gone, so the d= is given): Google and iCloud
    send for organizers of any domain; Exchange Online and outlook.com sign as the organizer."""
    raw = _corpus(name)
    headers = read_headers(raw)
    assert f"d={signer};" in raw.decode("latin-1")
    organizer = parse_calendar(extract_itip(raw).data)[0].organizer
    ev = Evidence(signed=(signer,), from_addr=headers.from_addr or "", sender_addr=headers.sender_addr or "")
    assert sending_service(ev) == service
    assert is_authenticated(organizer, ev) is True
    # Without the signature, the same headers prove nothing.
    assert is_authenticated(organizer, Evidence(from_addr=ev.from_addr, sender_addr=ev.sender_addr)) is False
