"""The checks every URL a client hands us passes (webhook endpoints, agent links). Pure.

Where the URL may point is checked later, when connecting (app/domain/agent_links.py,
`address_refusal`): DNS may change in between.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from app.domain.errors import ValidationFailed

MAX_URL_LENGTH = 2048


@dataclass(frozen=True)
class CheckedUrl:
    scheme: str  # lower case, one of the schemes asked for
    host: str  # lower case, no trailing dot; an IPv6 literal without brackets
    port: int  # the scheme's default when the URL names none


def check_url(value: str, *, field: str, schemes: Mapping[str, int], signed: str) -> CheckedUrl:
    """`value`'s parts when it is a URL of bounded length, of one of `schemes` (name → default
    port), with a host and no credentials (`signed` says what authenticates instead), fragment
    or port 0; else ValidationFailed naming `field`."""

    def refuse(why: str) -> ValidationFailed:
        return ValidationFailed(f"{field} {why}", field=field)

    if len(value) > MAX_URL_LENGTH:
        raise refuse(f"must be at most {MAX_URL_LENGTH} characters.")
    if not value.isascii() or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in value):
        raise refuse("must not contain spaces, control or non-ASCII characters (percent-encode them).")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise refuse(f"is not a valid URL ({exc}).") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise refuse("must start with " + " or ".join(f"{name}://" for name in schemes) + ".")
    if "@" in parts.netloc:  # also any user name or password urlsplit would find
        raise refuse(f"must not carry credentials (user:password@); {signed} instead.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise refuse("must name a host.")
    if parts.fragment or value.endswith("#"):
        raise refuse("must not have a #fragment.")
    if port == 0:
        raise refuse("must not use port 0.")
    return CheckedUrl(scheme=scheme, host=host.lower(), port=port or schemes[scheme])
