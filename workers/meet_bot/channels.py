"""The bot's four live channels, as the rest of the service sees them (issue: media bridge).

Pure data, no I/O. run_meet_bot(channels=...) calls the `on_*` callbacks as things happen
in the meeting and executes the commands put on `commands`; the worker (workers/joins.py)
connects both ends to Redis for the API's stream, REST and GraphQL. Callbacks may be sync
or async; a slow or failing one must never stall the bot (the bot's modules guard them).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Union

SAMPLE_RATE = 16_000  # Hz, mono, signed 16-bit little-endian: both directions
MAX_FRAME_MS = 100


@dataclass(frozen=True)
class Caption:
    """One caption line: partial lines grow (final False); each line is final exactly once."""

    speaker: str
    text: str
    final: bool
    at: datetime
    line_id: str = ""  # stable per line, so a client can replace the partial it showed


@dataclass(frozen=True)
class ChatMessage:
    sender: str
    text: str
    at: datetime
    self: bool = False  # sent by the PAL


@dataclass(frozen=True)
class SpeakAudio:
    """PCM (16 kHz mono s16le) to play as the PAL's microphone, after what is queued.

    `live` marks frames of a voice streamed in real time (a stream client, an agent): heard
    as soon as possible, and dropped rather than played late when they fall behind. A clip
    (a greeting) is played whole."""

    pcm: bytes
    live: bool = False


@dataclass(frozen=True)
class Say:
    """Text to speak with the face's voice (espeak-ng), after what is queued."""

    text: str


@dataclass(frozen=True)
class SendChat:
    text: str


@dataclass(frozen=True)
class Clear:
    """Barge-in: stop speaking at once and drop everything queued."""


Command = Union[SpeakAudio, Say, SendChat, Clear]
Callback = Callable[..., "None | Awaitable[None]"]


@dataclass
class MediaChannels:
    """What flows out of the meeting (callbacks) and into it (commands)."""

    on_audio: Callable[[bytes], "None | Awaitable[None]"] | None = None
    on_caption: Callable[[Caption], "None | Awaitable[None]"] | None = None
    on_chat: Callable[[ChatMessage], "None | Awaitable[None]"] | None = None
    # What the PAL itself said (from `Say`, not from captions labelled "You"), for the transcript.
    on_self_speech: Callable[[str, datetime], "None | Awaitable[None]"] | None = None
    # The PAL's voice started (True) or stopped (False) playing: queued speech included, so a
    # participant knows when its turn is over and when someone talks over it.
    on_speaking: Callable[[bool], "None | Awaitable[None]"] | None = None
    # Something the PAL cannot do in this meeting: ("captions_unavailable", why), ...
    on_problem: Callable[[str, str], "None | Awaitable[None]"] | None = None
    commands: asyncio.Queue[Command] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))
