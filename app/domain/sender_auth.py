"""Decide whether an invitation really comes from (or for) its organizer.

Evidence about who sent a message comes from:
- our own DKIM verification (``verify_dkim``), and
- Authentication-Results headers added by *our* MTA (``trusted_authserv_ids``);
  headers from anyone else can be forged by the sender and are ignored.

A signature vouches for an organizer only when its domain is *aligned* with the
organizer's (DMARC relaxed alignment: the same organizational domain), or when
the message has the exact shape of a calendar service that sends for other
domains (``CALENDAR_SERVICE_SHAPES``): a free mail account's signature
(d=outlook.com, d=gmail.com) never vouches for boss@acme.com.

``verify_dkim`` is the one function here that can do I/O: with no
``dnsfunc`` it uses dkimpy's DNS lookup. Pass a resolver in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import dkim

# Calendar services that send invitations on behalf of organizers of any domain,
# each recognised by the shape of its messages, as seen in the corpus:
# - Google Calendar: DKIM d=google.com, Sender (or From) calendar-notification@google.com
#   (forwarded invitations: forwarding-noreply@google.com), organizer in Reply-To/ORGANIZER
#   (google-invite-2012-sender-header.eml, google-counter-ct-method-reply-mismatch.eml);
# - iCloud: DKIM d=insideicloud.icloud.com, From noreply@insideicloud.icloud.com, ORGANIZER
#   an imip.me.com relay with the real address in EMAIL= (icloud-invite-fr.eml).
# Exchange Online and outlook.com sign with the organizer's own domain
# (d=bluedev.onmicrosoft.com, d=outlook.com): alignment covers them, no exception needed.
DEFAULT_CALENDAR_SERVICES: tuple[str, ...] = ("google.com", "icloud.com")


@dataclass(frozen=True)
class ServiceShape:
    name: str
    signing_domain: str              # a signature d= equal to or under this domain
    senders: tuple[str, ...]         # Sender or From must be one of these addresses ...
    sender_domain: str = ""          # ... or an address at (or under) this domain


CALENDAR_SERVICE_SHAPES: dict[str, ServiceShape] = {
    "google.com": ServiceShape("Google Calendar", "google.com",
                               ("calendar-notification@google.com", "forwarding-noreply@google.com")),
    "icloud.com": ServiceShape("iCloud Calendar", "insideicloud.icloud.com", (),
                               sender_domain="insideicloud.icloud.com"),
}
# Mailbox providers anyone can sign up with: listing one in CALENDAR_SERVICE_DOMAINS
# would let every account there vouch for any organizer, so it is ignored.
FREE_MAIL_DOMAINS = frozenset({
    "outlook.com", "hotmail.com", "live.com", "msn.com", "gmail.com", "googlemail.com",
    "yahoo.com", "aol.com", "me.com", "mac.com", "gmx.com", "gmx.net", "proton.me",
    "protonmail.com", "yandex.ru", "mail.ru", "zoho.com",
})

# Suffixes under which unrelated parties register names (a small stand-in for the Public
# Suffix List, which is not installed and must not be fetched at run time): the
# organizational domain is one label more than the longest of these that matches.
PUBLIC_SUFFIXES = frozenset({
    # two-level country-code registries
    *(f"{sld}.uk" for sld in ("co", "org", "me", "ltd", "plc", "net", "sch", "ac", "gov", "nhs", "police")),
    *(f"{sld}.au" for sld in ("com", "net", "org", "edu", "gov", "asn", "id")),
    *(f"{sld}.nz" for sld in ("co", "net", "org", "ac", "govt", "geek", "school")),
    *(f"{sld}.jp" for sld in ("co", "ne", "or", "ac", "go", "ad", "ed", "gr", "lg")),
    *(f"{sld}.kr" for sld in ("co", "or", "ne", "ac", "go", "re")),
    *(f"{sld}.br" for sld in ("com", "net", "org", "gov", "edu")),
    *(f"{sld}.cn" for sld in ("com", "net", "org", "gov", "edu", "ac")),
    *(f"{sld}.in" for sld in ("co", "net", "org", "firm", "gen", "ind", "ac", "edu", "gov")),
    *(f"{sld}.za" for sld in ("co", "org", "net", "gov", "ac", "web")),
    *(f"{sld}.il" for sld in ("co", "org", "net", "ac", "gov")),
    *(f"{sld}.id" for sld in ("co", "or", "ac", "go", "web")),
    *(f"{sld}.th" for sld in ("co", "or", "ac", "go", "in")),
    *(f"{sld}.{cc}" for cc in ("mx", "ar", "co", "tr", "tw", "hk", "sg", "my", "ph", "pk", "vn", "ua",
                               "eg", "sa", "ng", "pe", "ve", "ec", "uy", "cy", "mt", "gr", "pl", "ru")
      for sld in ("com", "net", "org", "edu", "gov")),
    # shared hosts: each tenant is its own organization, the host itself vouches for no one
    "onmicrosoft.com", "mail.onmicrosoft.com", "googlegroups.com", "appspot.com",
    "github.io", "herokuapp.com", "amazonses.com",
})
MAX_SIGNATURES = 5  # each one may cost a DNS lookup
MAX_HEADER_CHARS = 8192
MAX_AR_HEADERS = 20

AuthResult = tuple[str, str, str]  # (method, result, domain)


def _domain(value: str) -> str:
    value = value.strip().strip('"').strip().lower()
    return value.rsplit("@", 1)[-1].strip(".")


def verify_dkim(raw: bytes, dnsfunc: Callable[..., bytes | None] | None = None) -> list[str]:
    """Lower-case d= domains of the DKIM signatures that verify."""
    domains: list[str] = []
    try:
        checker = dkim.DKIM(raw)
        count = sum(1 for name, _ in checker.headers if name.lower() == b"dkim-signature")
    except Exception:  # noqa: BLE001 - unparseable message: nothing verifies
        return []
    kwargs = {"dnsfunc": dnsfunc} if dnsfunc is not None else {}
    for idx in range(min(count, MAX_SIGNATURES)):
        try:
            ok = checker.verify(idx=idx, **kwargs)
        except Exception:  # noqa: BLE001 - dkim.DKIMException, DNS errors, bad keys
            ok = False
        if ok and checker.domain:
            d = _domain(checker.domain.decode("ascii", "replace"))
            if d not in domains:
                domains.append(d)
    return domains


def _strip_comments(text: str) -> str:
    """Remove RFC 5322 (nested) comments in one linear pass."""
    out, depth, quoted = [], 0, False
    for ch in text:
        if ch == '"' and depth == 0:
            quoted = not quoted
        if not quoted and ch == "(":
            depth += 1
            continue
        if not quoted and ch == ")" and depth:
            depth -= 1
            continue
        if depth == 0:
            out.append(ch)
    return "".join(out)


def parse_authentication_results(
    header_values: Iterable[str], trusted_authserv_ids: Iterable[str]
) -> list[AuthResult]:
    """Passing dkim/spf/dmarc results from trusted Authentication-Results (RFC 8601).

    dkim -> header.d (or header.i's domain); spf -> smtp.mailfrom's domain
    (or smtp.helo); dmarc -> header.from.
    """
    trusted = {t.strip().lower() for t in trusted_authserv_ids}
    results: list[AuthResult] = []
    for n, value in enumerate(header_values):
        if n >= MAX_AR_HEADERS:
            break
        parts = [p.strip() for p in _strip_comments(" ".join(str(value)[:MAX_HEADER_CHARS].split())).split(";")]
        if not parts or not parts[0] or parts[0].split()[0].lower() not in trusted:
            continue
        for res in parts[1:]:
            tokens = res.split()
            if not tokens or "=" not in tokens[0]:
                continue
            method, _, result = tokens[0].partition("=")
            method, result = method.lower(), result.lower()
            if result != "pass" or method not in ("dkim", "spf", "dmarc"):
                continue
            props = {}
            for tok in tokens[1:]:
                key, eq, val = tok.partition("=")
                if eq:
                    props.setdefault(key.lower(), val)
            keys = {
                "dkim": ("header.d", "header.i"),
                "spf": ("smtp.mailfrom", "smtp.helo"),
                "dmarc": ("header.from",),
            }[method]
            domain = next((_domain(props[k]) for k in keys if props.get(k)), "")
            if domain:
                results.append((method, result, domain))
    return results


def _is_within(domain: str, parent: str) -> bool:
    return domain == parent or domain.endswith("." + parent)


def organizational_domain(domain: str) -> str | None:
    """The registrable domain (``mail.acme.com`` -> ``acme.com``, ``x.example.co.uk`` ->
    ``example.co.uk``); None for a bare public suffix (``com``, ``co.uk``) or junk."""
    d = _domain(domain)
    labels = d.split(".")
    if len(labels) < 2 or any(not label for label in labels):
        return None
    suffix_len = 1
    for n in range(2, len(labels) + 1):
        if ".".join(labels[-n:]) in PUBLIC_SUFFIXES:
            suffix_len = n
    if len(labels) <= suffix_len:
        return None
    return ".".join(labels[-(suffix_len + 1):])


def aligned(a: str, b: str) -> bool:
    """DMARC relaxed alignment: the two domains share one organizational domain."""
    org = organizational_domain(a)
    return org is not None and org == organizational_domain(b)


@dataclass(frozen=True)
class Evidence:
    """What vouches for one message.

    ``signed``: DKIM d= domains that verified, plus trusted Authentication-Results
    ``dkim=pass header.d`` and ``dmarc=pass header.from``; ``spf``: trusted
    ``spf=pass`` mail-from domains (they count for alignment only). Addresses are
    the message's From and Sender, lower-case."""

    signed: tuple[str, ...] = ()
    spf: tuple[str, ...] = ()
    from_addr: str = ""
    sender_addr: str = ""

    @classmethod
    def of(cls, value: "Evidence | Iterable[str]") -> "Evidence":
        """An Evidence, or signed domains alone (no header shape) as an Evidence."""
        return value if isinstance(value, Evidence) else cls(signed=tuple(value))


def evidence_from(dkim_domains: Iterable[str], auth_results: Iterable[AuthResult], *,
                  from_addr: str | None = None, sender_addr: str | None = None) -> Evidence:
    signed = [_domain(d) for d in dkim_domains]
    signed += [d for method, _, d in auth_results if method in ("dkim", "dmarc")]
    spf = [d for method, _, d in auth_results if method == "spf"]
    return Evidence(signed=tuple(dict.fromkeys(signed)), spf=tuple(dict.fromkeys(spf)),
                    from_addr=(from_addr or "").strip().lower(), sender_addr=(sender_addr or "").strip().lower())


def _shape(entry: str) -> ServiceShape | None:
    """The shape a CALENDAR_SERVICE_DOMAINS entry stands for; None when it may not vouch."""
    entry = _domain(entry)
    org = organizational_domain(entry)
    if org is None:
        return None
    if org in CALENDAR_SERVICE_SHAPES:
        return CALENDAR_SERVICE_SHAPES[org]
    if org in FREE_MAIL_DOMAINS:
        return None
    # A service we have no sample of: its own signature and its own Sender/From address.
    return ServiceShape(entry, entry, (), sender_domain=entry)


def _address_domain(addr: str) -> str:
    return _domain(addr) if "@" in addr else ""


def sending_service(evidence: Evidence | Iterable[str],
                    calendar_services: Sequence[str] = DEFAULT_CALENDAR_SERVICES) -> str | None:
    """The name of the listed calendar service whose signed message shape this is, if any."""
    ev = Evidence.of(evidence)
    signed = [_domain(d) for d in ev.signed]
    addresses = [a for a in (ev.sender_addr, ev.from_addr) if a]
    for entry in calendar_services:
        shape = _shape(entry)
        if shape is None or not any(_is_within(d, shape.signing_domain) for d in signed):
            continue
        for addr in addresses:
            dom = _address_domain(addr)
            if addr in shape.senders or (shape.sender_domain and dom and _is_within(dom, shape.sender_domain)):
                return shape.name
    return None


def signed_by(evidence: Evidence | Iterable[str], address_or_domain: str) -> bool:
    """Whether a DKIM signature (or trusted dkim/dmarc result) aligns with this address's domain."""
    target = _domain(address_or_domain)
    return any(aligned(d, target) for d in Evidence.of(evidence).signed)


def is_authenticated(
    organizer: str,
    evidence: Evidence | Iterable[str],
    calendar_services: Sequence[str] = DEFAULT_CALENDAR_SERVICES,
) -> bool:
    """True when a signature (or SPF) domain is aligned with the organizer's domain, or
    the message has the signed shape of a listed calendar service that sends for others.

    A bare public suffix vouches for nothing: ``com`` and ``co.uk`` align with no one."""
    org = _domain(organizer) if "@" in str(organizer) else ""
    if not org or organizational_domain(org) is None:
        return False
    ev = Evidence.of(evidence)
    if any(aligned(d, org) for d in (*ev.signed, *ev.spf)):
        return True
    return sending_service(ev, calendar_services) is not None
