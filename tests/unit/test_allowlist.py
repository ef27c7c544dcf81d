import time

import pytest
import re2

from app.domain.allowlist import MAX_ENTRIES, _compiled, is_allowed, validate_allowlist
from app.domain.errors import ValidationFailed

SPEC_LIST = ["alex@acme.com", ".*@acme\\.com"]


def test_empty_allowlist_admits_anyone():
    assert is_allowed("stranger@example.org", [])


def test_exact_and_regex_entries_full_match_case_insensitively():
    assert is_allowed("Alex@Acme.com", ["alex@acme.com"])
    assert is_allowed("bob@ACME.COM", SPEC_LIST)
    assert not is_allowed("bob@acme.com.evil.org", SPEC_LIST)  # full match, not search
    assert not is_allowed("bob@notacme.org", SPEC_LIST)


def test_exact_address_dots_are_literal():
    assert not is_allowed("alex@acmexcom", ["alex@acme.com"])
    assert is_allowed("a+b@acme.com", ["a+b@acme.com"])


def test_google_forwarding_address_admitted_only_when_google_signed_it():
    assert is_allowed("forwarding-noreply@google.com", ["only@acme.com"], sender_signed=True)
    assert not is_allowed("forwarding-noreply@google.com", ["only@acme.com"])  # anyone can write it


@pytest.mark.parametrize("bad", ["(", "[a-", "a{2,1}", "(?<!a)b@x.org", r"(a)\1"])
def test_invalid_regex_rejected_with_field(bad):
    with pytest.raises(ValidationFailed) as caught:
        validate_allowlist(["ok@acme.com", bad])
    assert caught.value.field == "layers.conferencing.allowlist[1]"


def test_bounds():
    with pytest.raises(ValidationFailed):
        validate_allowlist(["a@b.c"] * (MAX_ENTRIES + 1))
    with pytest.raises(ValidationFailed):
        validate_allowlist(["x" * 300])
    with pytest.raises(ValidationFailed):
        validate_allowlist("alex@acme.com")
    with pytest.raises(ValidationFailed):
        validate_allowlist([""])


def test_pathological_pattern_runs_in_linear_time():
    """(a+)+$ backtracks exponentially in Python's re; on RE2 it is linear."""
    validate_allowlist(["(a+)+$"])
    long_sender = "a" * 200_000 + "!"
    start = time.perf_counter()
    assert _compiled("(a+)+$").fullmatch(long_sender) is None
    assert not is_allowed("a" * 40 + "!@x.org", ["(a+)+$"])
    # Python's backtracking engine needs minutes for 40 a's; RE2 needs microseconds.
    assert time.perf_counter() - start < 1.0
    assert isinstance(_compiled("(a+)+$"), re2._Regexp)
