"""app/domain/agent_links.py: the agent URL, the address check and the signature (pure)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from app.domain.agent_links import (
    FIELD, address_refusal, host_allowed, parse_agent_url, refused_address, signature, signed_headers,
    validate_agent_url, verify,
)
from app.domain.errors import ValidationFailed
from app.domain.pal_document import agent_url, validate_document
from app.domain.backoff import jittered
from app.services.agent_link import loggable


@pytest.mark.parametrize("url, host, port, secure", [
    ("wss://agent.example.com/pal", "agent.example.com", 443, True),
    ("ws://agent.example.com:8080/x?token=abc", "agent.example.com", 8080, False),
    ("WSS://Agent.Example.COM./", "agent.example.com", 443, True),
    ("ws://[2001:db8::1]:9000/", "2001:db8::1", 9000, False),
    ("ws://127.0.0.1:8765", "127.0.0.1", 8765, False),  # allowed as a URL; the address is checked at connect
])
def test_good_urls(url, host, port, secure):
    parsed = parse_agent_url(url)
    assert (parsed.host, parsed.port, parsed.secure, parsed.url) == (host, port, secure, url)
    assert validate_agent_url(url) == url


@pytest.mark.parametrize("value, fragment", [
    ("https://agent.example.com/", "ws:// or wss://"),
    ("http://agent.example.com/", "ws:// or wss://"),
    ("agent.example.com", "ws:// or wss://"),
    ("ws://user:secret@agent.example.com/", "credentials"),
    ("ws://token@agent.example.com/", "credentials"),
    ("ws:///path", "host"),
    ("ws://agent.example.com:99999/", "valid URL"),
    ("ws://agent.example.com:0/", "port 0"),
    ("ws://agent.example.com/#x", "fragment"),
    ("ws://agent.example.com/ x", "spaces"),
    ("ws://agent.example.com/\x00", "control"),
    ("ws://agent.exämple.com/", "non-ASCII"),
    ("wss://a.example.com/" + "x" * 2048, "at most 2048"),
    ("", "empty"),
    (42, "string"),
    (["ws://a"], "string"),
])
def test_bad_urls_name_the_field(value, fragment):
    with pytest.raises(ValidationFailed) as raised:
        validate_agent_url(value)
    assert raised.value.field == FIELD == "layers.realtime.websocket_url"
    assert fragment in raised.value.message, raised.value.message


def doc(realtime):
    return {"pal_name": "Anna", "layers": {"realtime": realtime}}


def test_document_realtime_layer():
    valid = validate_document(doc({"websocket_url": "wss://agent.example.com/a", "other": 1}))
    assert agent_url(valid.layers) == "wss://agent.example.com/a"
    assert agent_url(validate_document(doc({"websocket_url": None})).layers) is None
    assert agent_url(validate_document(doc({})).layers) is None
    assert agent_url(validate_document({"pal_name": "Anna"}).layers) is None
    with pytest.raises(ValidationFailed) as raised:
        validate_document(doc({"websocket_url": "http://agent.example.com"}))
    assert raised.value.field == "layers.realtime.websocket_url"
    with pytest.raises(ValidationFailed) as raised:
        validate_document(doc("wss://agent.example.com"))
    assert raised.value.field == "layers.realtime"


@pytest.mark.parametrize("address, why", [
    ("127.0.0.1", "loopback"), ("127.8.9.10", "loopback"), ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"), ("::ffff:7f00:1", "loopback"), ("::127.0.0.1", "loopback"),
    ("0.0.0.0", "unspecified"), ("::", "unspecified"), ("::ffff:0.0.0.0", "unspecified"),
    ("10.0.0.1", "private"), ("10.255.255.255", "private"), ("::ffff:10.1.2.3", "private"),
    ("172.16.0.1", "private"), ("172.31.255.254", "private"),
    ("192.168.1.1", "private"), ("::ffff:192.168.0.10", "private"),
    ("169.254.169.254", "link-local"), ("::ffff:169.254.169.254", "link-local"),
    ("fe80::1", "link-local"), ("fe80::1%eth0", "link-local"), ("febf::1", "link-local"),
    ("fc00::1", "private"), ("fd12:3456::1", "private"),
    ("224.0.0.1", "multicast"), ("239.255.255.250", "multicast"), ("ff02::1", "multicast"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("64:ff9b::a00:1", "private"),  # NAT64 of 10.0.0.1
    ("100.64.0.1", "not public"),  # carrier-grade NAT
    ("not-an-ip", "not an IP address"),
])
def test_refused_addresses(address, why):
    assert refused_address(address) == why


def test_reserved_space_is_refused():
    assert refused_address("240.0.0.1") in {"private", "reserved"}  # the label varies by Python version


@pytest.mark.parametrize("address", ["8.8.8.8", "172.32.0.1", "172.15.255.255", "1.1.1.1", "::ffff:8.8.8.8",
                                     "2606:4700:4700::1111", "2002:808:808::"])
def test_public_addresses(address):
    assert refused_address(address) is None


def test_allowlist():
    allowed = ("127.0.0.1", "agent.internal", "10.0.0.0/8", "[::1]")
    assert host_allowed("127.0.0.1", allowed)
    assert host_allowed("Agent.Internal.", allowed, ["192.168.9.9"])  # by name, whatever it resolves to
    assert host_allowed("box", allowed, ["10.1.2.3"])  # by network, every address inside
    assert not host_allowed("box", allowed, ["10.1.2.3", "192.168.0.1"])
    assert host_allowed("::1", allowed)
    assert not host_allowed("localhost", allowed, ["::1", "127.0.0.1"])  # no one entry covers both
    assert not host_allowed("127.0.0.2", allowed)
    assert not host_allowed("127.0.0.1", ())

    assert address_refusal("127.0.0.1", ["127.0.0.1"], allowed) is None
    assert address_refusal("agent.example.com", ["93.184.216.34"], ()) is None
    why = address_refusal("127.0.0.1", ["127.0.0.1"], ())
    assert "127.0.0.1 (loopback)" in why and "AGENT_ALLOWED_HOSTS" in why
    # A name that resolves to a public and a private address is refused as a whole.
    assert "private" in address_refusal("mixed.example.com", ["93.184.216.34", "10.0.0.5"], ())
    assert "did not resolve" in address_refusal("nowhere.example.com", [], ())


def test_signature_verifies_with_the_agents_own_key():
    key = "pk_live_example"
    key_hash = hashlib.sha256(key.encode()).hexdigest()  # what accounts.api_key_hash stores
    headers = signed_headers(key_hash, 1_800_000_000, "c0123456789a", "p0123456789a")
    expected = hmac.new(key_hash.encode(), b"1800000000.c0123456789a", hashlib.sha256).hexdigest()
    assert headers == {"x-pal-timestamp": "1800000000", "x-pal-conversation": "c0123456789a",
                       "x-pal-signature": f"v1={expected}", "x-pal-id": "p0123456789a"}
    assert verify(key, headers, now=1_800_000_010)
    assert not verify("another-key", headers, now=1_800_000_010)
    assert not verify(key, headers, now=1_800_001_000)  # too old
    assert not verify(key, {**headers, "x-pal-conversation": "c999"}, now=1_800_000_010)
    assert not verify(key, {}, now=0)
    assert signature(key_hash, 1, "c") != signature(key_hash, 2, "c")


def test_backoff_and_logged_url():
    assert jittered(8.0, rng=lambda: 0.0) == 4.0 and jittered(8.0, rng=lambda: 1.0) == 8.0
    assert loggable("wss://agent.example.com:8443/pal/a?token=secret") == "wss://agent.example.com:8443/pal/a"
