"""A Google Meet look-alike (HTTPS on 127.0.0.1) for testing the meet bot with real Chromium."""

from .server import MeetingRecord, MeetLookalike, make_certificate

__all__ = ["MeetLookalike", "MeetingRecord", "make_certificate"]
