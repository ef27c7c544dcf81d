"""Who may invite a PAL: exact addresses or regular expressions, matched in linear time.

Patterns run on RE2 (google-re2), which has no backtracking, so a pathological
entry such as ``(a+)+$`` cannot stall the mail pipeline.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

import re2

from app.domain.errors import ValidationFailed

# Google sends forwarded invitations from this address, so the spec admits it whatever
# the allowlist says, but only when the message is proven to be Google's (the caller
# passes sender_signed: a DKIM d=google.com, or a trusted Authentication-Results, aligned
# with it). Anyone can write it in an ORGANIZER line.
ALWAYS_ALLOWED = frozenset({"forwarding-noreply@google.com"})
MAX_ENTRIES = 100
MAX_ENTRY_LENGTH = 256
MAX_ADDRESS_LENGTH = 320

# An entry made only of address characters is an exact address, even though '.'
# and '+' are regex metacharacters: "alex@acme.com" must not also admit "alex@acmexcom".
_PLAIN_ADDRESS = re.compile(r"^[A-Za-z0-9._%+'-]+@[A-Za-z0-9.-]+$")

_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.case_sensitive = False
_RE2_OPTIONS.max_mem = 8 << 20


def is_exact_address(entry: str) -> bool:
    return bool(_PLAIN_ADDRESS.fullmatch(entry))


@lru_cache(maxsize=4096)
def _compiled(entry: str) -> "re2._Regexp":
    return re2.compile(entry, options=_RE2_OPTIONS)


def validate_allowlist(entries: object, *, field: str = "layers.conferencing.allowlist") -> list[str]:
    """Check every entry compiles and is within bounds; returns the list to store."""
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise ValidationFailed("Allowlist must be a list of strings.", field=field)
    if len(entries) > MAX_ENTRIES:
        raise ValidationFailed(f"Allowlist may hold at most {MAX_ENTRIES} entries.", field=field)
    cleaned: list[str] = []
    for index, entry in enumerate(entries):
        where = f"{field}[{index}]"
        if not isinstance(entry, str) or not entry.strip():
            raise ValidationFailed("Allowlist entries must be non-empty strings.", field=where)
        entry = entry.strip()
        if len(entry) > MAX_ENTRY_LENGTH:
            raise ValidationFailed(
                f"Allowlist entries must be at most {MAX_ENTRY_LENGTH} characters.", field=where
            )
        if not is_exact_address(entry):
            try:
                _compiled(entry)
            except Exception as exc:  # re2.error carries RE2's own message
                raise ValidationFailed(
                    f"Allowlist entry {entry!r} is not a valid regular expression: {exc}",
                    field=where,
                ) from None
        cleaned.append(entry)
    return cleaned


def is_allowed(sender: str, allowlist: Sequence[str], *, sender_signed: bool = False) -> bool:
    """Whether `sender` may invite: empty list admits anyone; entries full-match, case-insensitively.

    `sender_signed`: the message carries a signature aligned with the sender's own domain;
    only then are the ALWAYS_ALLOWED addresses admitted past a non-empty allowlist."""
    sender = sender.strip().lower()
    if not allowlist or (sender in ALWAYS_ALLOWED and sender_signed):
        return True
    if len(sender) > MAX_ADDRESS_LENGTH:
        return False
    for entry in allowlist:
        if is_exact_address(entry):
            if entry.lower() == sender:
                return True
        elif _compiled(entry).fullmatch(sender):
            return True
    return False
