"""The media bridge's pure parts: frame and command validation, event shapes, bounded queues."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone

import pytest

from app.domain.errors import ValidationFailed
from app.rest.stream import parse_client_text, started_message
from app.services import media_relay, transcripts
from workers.joins import command_sink, media_channels
from workers.meet_bot.channels import Caption, ChatMessage, Clear, MediaChannels, Say, SendChat, SpeakAudio

AT = datetime(2026, 12, 1, 10, 0, 0, tzinfo=timezone.utc)


def test_pcm_frames_are_even_non_empty_and_at_most_100_ms():
    assert media_relay.valid_pcm(b"\x00" * 3200) is None
    assert media_relay.valid_pcm(b"\x00" * 2) is None
    assert "empty" in media_relay.valid_pcm(b"")
    assert "even" in media_relay.valid_pcm(b"\x00" * 3)
    assert "3200" in media_relay.valid_pcm(b"\x00" * 3202)


def test_commands_round_trip_and_malformed_ones_are_refused():
    for kind, text in (("say", "hello"), ("chat", "notes"), ("clear", None)):
        raw = media_relay.encode(media_relay.command(kind, text))
        assert media_relay.parse_command(raw) == (kind, text)
    assert media_relay.parse_command('{"type":"say","text":"  a\\u0000b "}') == ("say", "ab")
    for raw in ("nope", "[]", '{"type":"say"}', '{"type":"say","text":"  "}', '{"type":"dance"}',
                '{"type":"chat","text":5}', '{"type":"say","text":"' + "x" * 9000 + '"}'):
        assert media_relay.parse_command(raw) is None, raw
    with pytest.raises(ValueError):
        media_relay.command("dance")


def test_event_shapes():
    assert media_relay.caption_event(Caption("Alex", "Hi", True, AT, "l7")) == {
        "type": "transcript", "speaker": "Alex", "text": "Hi", "final": True, "at": "2026-12-01T10:00:00Z",
        "line_id": "l7"}
    assert media_relay.chat_event(ChatMessage("Anna", "yo", AT, self=True)) == {
        "type": "chat", "sender": "Anna", "text": "yo", "at": "2026-12-01T10:00:00Z", "self": True}
    assert media_relay.status_event("in_call", None) == {"type": "status", "status": "in_call", "reason": None}
    assert json.loads(started_message("c1")) == {"type": "started", "conversation_id": "c1", "sample_rate": 16000,
                                                 "encoding": "pcm_s16le", "channels": 1}


def test_client_text_frames():
    assert parse_client_text('{"type":"say","text":" hi "}') == {"type": "say", "text": "hi"}
    assert parse_client_text('{"type":"chat","text":"x"}') == {"type": "chat", "text": "x"}
    assert parse_client_text('{"type":"clear","text":"ignored"}') == {"type": "clear"}
    assert "JSON" in parse_client_text("{")
    assert "say, chat or clear" in parse_client_text('{"type":"speak"}')
    assert "say, chat or clear" in parse_client_text('"say"')
    assert "too long" in parse_client_text(json.dumps({"type": "say", "text": "x" * 2001}))
    assert "8192" in parse_client_text("x" * 8193)


def test_text_bounds():
    assert transcripts.validate_text(" a ") == "a"
    assert transcripts.validate_text("x" * 2000) == "x" * 2000
    for bad in ("", "  ", None, 5, "x" * 2001, "a\x00b"):
        with pytest.raises(ValidationFailed):
            transcripts.validate_text(bad)
    assert transcripts.bounded(" a\x00b " + "x" * 3000) == ("ab " + "x" * 3000)[:2000]
    assert transcripts.page_bounds(None, None) == (0, transcripts.PAGE_MAX)
    for after, first in ((-1, 1), (0, 0), (0, 501), (True, 1), ("1", 1)):
        with pytest.raises(ValidationFailed):
            transcripts.page_bounds(after, first)


async def test_callbacks_never_block_or_raise_and_count_what_they_drop():
    relay = media_relay.WorkerRelay("c1", 1, "Anna")  # not started: nothing drains the queues
    for _ in range(media_relay.OUTBOX_SIZE + 5):
        relay.on_audio(b"\x00" * 320)
    assert relay.stats.dropped == 5
    relay.on_audio(b"\x00" * 3)  # malformed: ignored, not queued
    relay.on_caption(object())  # not a Caption at all: logged, never raised
    relay.on_chat(None)
    relay.on_self_speech("hi", AT)
    assert relay.stats.dropped == 6  # the outbox was full; the store queue took the line
    await relay.close(flush_seconds=0.01)


def test_commands_reach_the_bots_queue_and_overflow_is_dropped():
    channels = MediaChannels(commands=asyncio.Queue(maxsize=4))
    deliver = command_sink(channels, "c1")
    assert deliver("audio", b"\x00\x00") and deliver("say", "hi") and deliver("chat", "yo") and deliver("clear", None)
    assert not deliver("say", "one too many")
    assert [channels.commands.get_nowait() for _ in range(4)] == [SpeakAudio(b"\x00\x00", live=True), Say("hi"), SendChat("yo"),
                                                                  Clear()]
    relay = media_relay.WorkerRelay("c1", 1, "Anna")
    wired = media_channels(relay)
    assert (wired.on_audio, wired.on_caption, wired.on_chat, wired.on_self_speech) == (
        relay.on_audio, relay.on_caption, relay.on_chat, relay.on_self_speech)
