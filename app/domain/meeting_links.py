"""Find and normalise the online-meeting link of a calendar event.

Pure functions, no I/O. Regexes are bounded and have no nested quantifiers,
so scanning hostile text is linear in its length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from app.domain.platforms import KNOWN_PLATFORMS, Platform

if TYPE_CHECKING:  # pragma: no cover
    import icalendar.cal

# The platforms themselves are listed in app/domain/platforms.py; these names stay importable.
GOOGLE_MEET = Platform.GOOGLE_MEET
ZOOM = Platform.ZOOM
TEAMS = Platform.TEAMS
OTHER = Platform.OTHER

# Characters that can't be part of a URL in free text; also excludes the
# backslash so iCalendar escapes ("\,") and "<url>" wrappers end a match.
_URL_RE = re.compile(r"https?://[^\s<>\"'\\\[\]{}|^`]{1,2048}", re.IGNORECASE)
_TRAILING = ".,;:!?)'\"]}>*"
_MEET_CODE_RE = re.compile(r"/([a-z]{3}-[a-z]{4}-[a-z]{3})/?$")
_MAX_TEXT = 256 * 1024  # free text scanned per field; real descriptions are a few KB
_MAX_URLS = 200  # URLs examined per field
# Hosts whose non-meeting URLs are vendor boilerplate in invitation text
# ("View your event at https://www.google.com/calendar/...", "Learn more
# https://aka.ms/JoinTeamsMeeting", "Meeting options"): never a meeting link.
_BOILERPLATE_HOSTS = frozenset({
    "google.com", "www.google.com", "calendar.google.com", "support.google.com",
    "accounts.google.com", "meet.google.com", "aka.ms", "go.microsoft.com",
    "support.microsoft.com", "teams.microsoft.com", "teams.live.com",
    "zoom.us", "www.zoom.us", "support.zoom.us", "zoom.com", "www.zoom.com",
})


@dataclass(frozen=True)
class MeetingLink:
    """A normalised meeting URL and the platform it belongs to."""

    url: str  # normalised URL
    platform: str  # "google_meet" | "zoom" | "teams" | "other"


def _is_zoom_host(host: str) -> bool:
    return any(host == d or host.endswith("." + d) for d in ("zoom.us", "zoom.com", "zoomgov.com"))


def _is_teams_host(host: str) -> bool:
    return host in ("teams.microsoft.com", "teams.live.com") or host.endswith(".teams.microsoft.us")


def classify_url(url: str) -> MeetingLink | None:
    """Normalise and classify one URL; None unless it is an http(s) URL."""
    url = url.strip().rstrip(_TRAILING)
    if len(url) > 4096:
        return None
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
    except ValueError:  # e.g. a malformed IPv6 literal
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    path = parts.path

    # Google's click-tracking redirect wraps the real link in ?q=.
    if host in ("www.google.com", "google.com") and path == "/url":
        target = dict(parse_qsl(parts.query)).get("q")
        if target and target != url:
            inner = classify_url(target)
            if inner is not None and inner.platform in KNOWN_PLATFORMS:
                return inner

    if host == "meet.google.com":
        low = path.lower()
        m = _MEET_CODE_RE.search(low)
        if m and low.count("/") <= 2:  # "/abc-defg-hij" or "/abc-defg-hij/"
            return MeetingLink(f"https://meet.google.com/{m.group(1)}", GOOGLE_MEET)
        if low.startswith("/lookup/") and len(low) > len("/lookup/"):
            return MeetingLink(f"https://meet.google.com{path.rstrip('/')}", GOOGLE_MEET)

    if _is_zoom_host(host) and re.match(r"/(j|w|my|s|wc/join)/[^/]", path):
        pwd = [(k, v) for k, v in parse_qsl(parts.query) if k == "pwd"][:1]
        return MeetingLink(urlunsplit(("https", host, path, urlencode(pwd), "")), ZOOM)

    if _is_teams_host(host) and (path.startswith("/l/meetup-join/") or path.startswith("/meet/")):
        return MeetingLink(url, TEAMS)

    return MeetingLink(url, OTHER)


def _is_boilerplate(link: MeetingLink) -> bool:
    if link.platform != OTHER:
        return False
    try:
        host = (urlsplit(link.url).hostname or "").lower()
    except ValueError:
        return True
    return host in _BOILERPLATE_HOSTS


def iter_links(text: str) -> Iterator[MeetingLink]:
    """Every http(s) link in free text, in order, classified; boilerplate skipped."""
    for i, m in enumerate(_URL_RE.finditer(text[:_MAX_TEXT])):
        if i >= _MAX_URLS:
            return
        link = classify_url(m.group(0))
        if link is not None and not _is_boilerplate(link):
            yield link


def _best(links: Iterable[MeetingLink]) -> MeetingLink | None:
    """First known-platform link, else the first link at all."""
    first: MeetingLink | None = None
    for link in links:
        if link.platform in KNOWN_PLATFORMS:
            return link
        first = first or link
    return first


def _values(event: "icalendar.cal.Event", name: str) -> list[str]:
    value = event.get(name)
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    return [str(v) for v in values]


def _unfold_url(value: str) -> str:
    # A folded property may keep stray whitespace after unfolding; a URL has none.
    return "".join(value.split())


def find_meeting_link(event: "icalendar.cal.Event") -> MeetingLink | None:
    """The event's meeting link.

    Structured properties win and are authoritative even for an unknown
    platform: CONFERENCE / X-GOOGLE-CONFERENCE, then
    X-MICROSOFT-SKYPETEAMSMEETINGURL. Then free text: a known-platform URL in
    LOCATION, then in DESCRIPTION; failing that, the first other URL in
    LOCATION, then DESCRIPTION (so a venue web page in LOCATION does not hide
    a Meet link in DESCRIPTION).
    """
    for names in (("CONFERENCE", "X-GOOGLE-CONFERENCE"), ("X-MICROSOFT-SKYPETEAMSMEETINGURL",)):
        found = _best(
            link
            for name in names
            for v in _values(event, name)
            if (link := classify_url(_unfold_url(v))) is not None
        )
        if found is not None:
            return found
    texts = [t for name in ("LOCATION", "DESCRIPTION") for t in _values(event, name)]
    fallback: MeetingLink | None = None
    for text in texts:
        found = _best(iter_links(text))
        if found is not None and found.platform in KNOWN_PLATFORMS:
            return found
        fallback = fallback or found
    return fallback
