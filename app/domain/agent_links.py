"""Agent links, pure part: a PAL's `layers.realtime.websocket_url`, the addresses a bot may
connect it to, and the signature the agent checks.

All I/O (resolving, connecting, Redis) is app/services/agent_link.py's.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from app.domain.errors import ValidationFailed
from app.domain.urls import check_url

FIELD = "layers.realtime.websocket_url"
SCHEMES = {"ws": 80, "wss": 443}
SIGNATURE_VERSION = "v1"
HEADER_TIMESTAMP = "x-pal-timestamp"
HEADER_CONVERSATION = "x-pal-conversation"
HEADER_PAL = "x-pal-id"
HEADER_SIGNATURE = "x-pal-signature"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# --- the URL (validated when a PAL is written) ------------------------------------------------

@dataclass(frozen=True)
class AgentUrl:
    url: str
    secure: bool
    host: str  # lower case; an IPv6 literal without brackets
    port: int


def parse_agent_url(value: object) -> AgentUrl:
    """The URL's parts, or ValidationFailed naming layers.realtime.websocket_url."""
    if not isinstance(value, str):
        raise ValidationFailed(f"{FIELD} must be a string (a ws:// or wss:// URL).", field=FIELD)
    if not value:
        raise ValidationFailed(f"{FIELD} must not be empty.", field=FIELD)
    url = check_url(value, field=FIELD, schemes=SCHEMES, signed="the connection is signed")
    return AgentUrl(url=value, secure=url.scheme == "wss", host=url.host, port=url.port)


def validate_agent_url(value: object) -> str:
    """The URL as given, when it is acceptable as layers.realtime.websocket_url."""
    return parse_agent_url(value).url


# --- the address (checked when connecting: DNS may change) --------------------------------------

def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:  # ::ffff:a.b.c.d
            return address.ipv4_mapped
        if address.sixtofour is not None:  # 2002:a.b.c.d::/48 reaches a.b.c.d
            return address.sixtofour
        if int(address) >> 32 == 0 and int(address) > 1:  # ::a.b.c.d (deprecated IPv4-compatible)
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if address in ipaddress.IPv6Network("64:ff9b::/96"):  # NAT64 of a.b.c.d
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def refused_address(address: str | IPAddress) -> str | None:
    """Why a bot may not connect to `address` ("loopback", "private", ...), or None for a public one.

    IPv4-mapped, IPv4-compatible, 6to4 and NAT64 forms are judged as the IPv4 address they reach."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0] if isinstance(address, str) else address)
    except ValueError:
        return "not an IP address"
    ip = _unmapped(ip)
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private:
        return "private"
    if ip.is_reserved:
        return "reserved"
    if not ip.is_global:
        return "not public"
    return None


def _entry_matches(entry: str, host: str, addresses: Iterable[str]) -> bool:
    entry = entry.strip().lower().rstrip(".")
    if entry.startswith("[") and entry.endswith("]"):
        entry = entry[1:-1]
    if not entry:
        return False
    if entry == host:
        return True
    try:
        network = ipaddress.ip_network(entry, strict=False)
    except ValueError:
        return False
    # An address or network entry: the host must be (or resolve only to) addresses in it.
    found = [ipaddress.ip_address(a.split("%", 1)[0]) for a in addresses]
    try:
        found.append(ipaddress.ip_address(host))
    except ValueError:
        pass
    return bool(found) and all(a.version == network.version and a in network for a in found)


def host_allowed(host: str, allowed: Iterable[str], addresses: Iterable[str] = ()) -> bool:
    """Whether AGENT_ALLOWED_HOSTS lists `host` (by name), or holds an address or network
    (`127.0.0.1`, `10.0.0.0/8`, `::1`) that covers it and every address it resolved to."""
    host = host.lower().rstrip(".")
    addresses = list(addresses)
    return any(_entry_matches(entry, host, addresses) for entry in allowed)


def address_refusal(host: str, addresses: Iterable[str], allowed: Iterable[str],
                    setting: str = "AGENT_ALLOWED_HOSTS") -> str | None:
    """Why a bot may not connect to `host`, which resolved to `addresses`; None when it may.

    Every address must be public (a name that also resolves to a private address is
    refused), unless the allow-list (`setting`: AGENT_ALLOWED_HOSTS, WEBHOOK_ALLOWED_HOSTS)
    covers the host."""
    addresses = list(addresses)
    if not addresses:
        return f"{host} did not resolve to any address"
    if host_allowed(host, allowed, addresses):
        return None
    for address in addresses:
        why = refused_address(address)
        if why is not None:
            return f"{host} resolves to {address} ({why}); list the host in {setting} to allow it"
    return None


# --- the signature ----------------------------------------------------------------------------

def key_material(api_key_hash: str) -> bytes:
    """The HMAC key: the account's stored key hash (hex SHA-256 of the API key), as ASCII.
    The agent computes it from its own key: hashlib.sha256(key.encode()).hexdigest()."""
    return api_key_hash.strip().lower().encode("ascii")


def signature(api_key_hash: str, timestamp: int | str, conversation_id: str) -> str:
    """`v1=<hex HMAC-SHA256(key_material, "<timestamp>.<conversation_id>")>`."""
    message = f"{timestamp}.{conversation_id}".encode()
    digest = hmac.new(key_material(api_key_hash), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def signed_headers(api_key_hash: str, timestamp: int, conversation_id: str, pal_id: str | None = None
                   ) -> dict[str, str]:
    headers = {HEADER_TIMESTAMP: str(int(timestamp)), HEADER_CONVERSATION: conversation_id,
               HEADER_SIGNATURE: signature(api_key_hash, int(timestamp), conversation_id)}
    if pal_id:
        headers[HEADER_PAL] = pal_id
    return headers


def verify(api_key: str, headers: dict[str, str], *, now: float, max_age: float = 300) -> bool:
    """What an agent does (documented in README): recompute and compare, within `max_age` s."""
    try:
        timestamp = int(headers[HEADER_TIMESTAMP])
        conversation_id = headers[HEADER_CONVERSATION]
        given = headers[HEADER_SIGNATURE]
    except (KeyError, ValueError):
        return False
    if abs(now - timestamp) > max_age:
        return False
    expected = signature(hashlib.sha256(api_key.encode()).hexdigest(), timestamp, conversation_id)
    return hmac.compare_digest(expected, given)
