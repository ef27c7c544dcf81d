"""Decide whether an invitation really comes from (or for) its organizer.

Two sources of "vouched" domains:
- our own DKIM verification (``verify_dkim``), and
- Authentication-Results headers added by *our* MTA (``trusted_authserv_ids``);
  headers from anyone else can be forged by the sender and are ignored.

``verify_dkim`` is the one function here that can do I/O: with no
``dnsfunc`` it uses dkimpy's DNS lookup. Pass a resolver in tests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import dkim

# Services that send invitations on behalf of organizers whose own domain did
# not sign the message (Google Calendar's calendar-notification@google.com,
# iCloud's noreply@insideicloud.icloud.com, Exchange Online).
# Risk: trusting a service means trusting every account holder there to not
# forge an ORGANIZER (e.g. any outlook.com user). Narrow it per deployment.
DEFAULT_CALENDAR_SERVICES: tuple[str, ...] = (
    "google.com",
    "calendar.google.com",
    "icloud.com",
    "me.com",
    "outlook.com",
    "office365.com",
    "microsoft.com",
)
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


def is_authenticated(
    organizer: str,
    vouched_domains: Sequence[str],
    calendar_services: Sequence[str] = DEFAULT_CALENDAR_SERVICES,
) -> bool:
    """True when a vouched domain is the organizer's domain or a parent of it,
    or is (within) a calendar service that sends for organizers.

    A vouched domain needs at least two labels: "com" vouches for nothing.
    """
    org = _domain(organizer) if "@" in str(organizer) else ""
    services = [_domain(s) for s in calendar_services]
    for raw in vouched_domains:
        v = _domain(raw)
        if v.count(".") < 1:
            continue
        if org and _is_within(org, v):
            return True
        if any(_is_within(v, s) for s in services if s):
            return True
    return False
