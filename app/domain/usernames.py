"""Username rules for the conferencing layer (the local part of the PAL's email)."""

from __future__ import annotations

import re

from app.domain.errors import ValidationFailed

USERNAME_PATTERN = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._-]*[a-zA-Z0-9]$")
RESERVED_PATTERN = re.compile(r"^bot[0-9]+$", re.IGNORECASE)
MAX_LENGTH = 64  # RFC 5321 limit for a local part

TAKEN_MESSAGE = "Username is already taken."
TAKEN_DETAIL = "Username is already taken; choose a different username."


def username_problem(username: object) -> str | None:
    """Why `username` is not acceptable, or None when it is (ignoring availability)."""
    if not isinstance(username, str):
        return "Username must be a string."
    if len(username) < 2:
        return "Username must be at least 2 characters."
    if len(username) > MAX_LENGTH:
        return f"Username must be at most {MAX_LENGTH} characters."
    if not USERNAME_PATTERN.fullmatch(username):
        return (
            "Username must start and end with a letter or digit and may contain only "
            "letters, digits, '.', '_' or '-'."
        )
    if RESERVED_PATTERN.fullmatch(username):
        return "Username is reserved."
    return None


def normalise_username(username: object) -> str:
    """The stored form (lower case) of a valid username; raises ValidationFailed otherwise."""
    problem = username_problem(username)
    if problem:
        raise ValidationFailed(problem, field="layers.conferencing.username")
    assert isinstance(username, str)
    return username.lower()


def email_address(username: str, domain: str) -> str:
    return f"{username.lower()}@{domain.lower()}"
