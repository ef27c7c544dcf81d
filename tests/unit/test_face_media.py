import io
import struct
import wave

import pytest

from app.domain.errors import ValidationFailed
from app.domain.face_media import check_audio, check_face_fields, check_video, y4m_frame_bytes


def y4m(width: int = 32, height: int = 24, frames: int = 1, header: str = "F12:1 Ip A1:1 C420jpeg",
        frame_bytes: int | None = None) -> bytes:
    size = width * height * 3 // 2 if frame_bytes is None else frame_bytes
    head = f"YUV4MPEG2 W{width} H{height}" + (f" {header}" if header else "") + "\n"
    return head.encode() + (b"FRAME\n" + bytes(size)) * frames


def wav(channels: int = 1, width: int = 2, rate: int = 16000, frames: int = 1600) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(frames * channels * width))
    return out.getvalue()


def riff(*chunks: tuple[bytes, bytes], size: int | None = None) -> bytes:
    body = b"WAVE" + b"".join(tag + struct.pack("<I", len(data)) + data + b"\0" * (len(data) % 2)
                              for tag, data in chunks)
    return b"RIFF" + struct.pack("<I", len(body) if size is None else size) + body


def fmt(tag: int = 1, channels: int = 1, rate: int = 16000, bits: int = 16) -> bytes:
    block = channels * bits // 8
    return struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)


Y4M = y4m()
WAV = wav()


def test_valid_media_passes():
    check_video(Y4M)
    check_video(y4m(frames=5))
    check_video(y4m(33, 17, header="", frame_bytes=y4m_frame_bytes(33, 17)))  # odd sizes: chroma planes round up; no C tag means 4:2:0
    check_video(y4m(header="C420mpeg2 XYSCSS=420MPEG2", frame_bytes=y4m_frame_bytes(32, 24)))
    check_audio(WAV)
    check_audio(wav(channels=2, width=1, rate=8000))
    check_audio(riff((b"fmt ", fmt(tag=3, bits=32)), (b"LIST", b"INFOjunk"), (b"data", bytes(64))))
    assert check_face_fields(" Dana ", None) == ("Dana", "en")


def test_frame_size_follows_the_header():
    assert y4m_frame_bytes(32, 24) == 32 * 24 * 3 // 2
    assert y4m_frame_bytes(33, 17) == 33 * 17 + 2 * 17 * 9


@pytest.mark.parametrize("data, fragment", [
    (b"", "YUV4MPEG2"),
    (b"\x00\x00\x00\x20ftypmp42", "YUV4MPEG2"),
    (b"YUV4MPEG2 W9999 H24\nFRAME\n", "between 16x16 and 1920x1080"),
    (b"YUV4MPEG2 W32 H24\n", "no frames"),
    (b"YUV4MPEG2 W32 H24 F12:1\n", "no frames"),
    # the 35-byte "video": a header and one marker, no picture
    (b"YUV4MPEG2 W1920 H1080\nFRAME\n", "truncated"),
    (y4m(frame_bytes=32 * 24), "truncated"),  # a frame too short for the 4:2:0 size the header gives
    (y4m(frames=3)[:-1], "truncated"),  # last frame one byte short
    (y4m(frames=2) + b"FRA", "truncated"),
    (y4m(frames=2)[:-1158] + b"FRAMX\n" + bytes(1152), "frame 2"),
    (y4m(header="C422"), "4:2:0"),
    (y4m(header="C444"), "4:2:0"),
    (y4m(header="Im"), "interlac"),
    (y4m(header="F12:0"), "frame rate"),
    (y4m(header="F0:1"), "frame rate"),
    (y4m(header="Fx:1"), "frame rate"),
    (b"YUV4MPEG2 W32  H24\nFRAME\n" + bytes(1152), "header"),
    (b"YUV4MPEG2 H24\nFRAME\n" + bytes(1152), "W"),
    (b"YUV4MPEG2 W32 H24 " + b"X" * 300 + b"\nFRAME\n" + bytes(1152), "header"),
    (b"YUV4MPEG2 W32 H24\nFRAME Ixyz\n" + bytes(1152), "per-frame"),
])
def test_bad_video_rejected_naming_the_problem(data, fragment):
    with pytest.raises(ValidationFailed) as caught:
        check_video(data)
    assert caught.value.field == "video"
    assert fragment.lower() in caught.value.message.lower(), caught.value.message


@pytest.mark.parametrize("data, fragment", [
    (b"", "RIFF/WAVE"),
    (b"ID3\x03", "RIFF/WAVE"),
    (b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(40), "RIFF/WAVE"),
    (b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + bytes(28), "fmt"),  # the old 44-byte pass
    (WAV[:-100], "truncated"),
    (WAV + bytes(100), "RIFF header"),
    (riff((b"fmt ", fmt()), (b"data", bytes(64)), size=1000), "truncated"),
    (riff((b"fmt ", fmt())), "no 'data'"),
    (riff((b"data", bytes(64))), "no 'fmt '"),
    (riff((b"fmt ", fmt()), (b"data", b"")), "no samples"),
    (riff((b"fmt ", fmt(tag=85)), (b"data", bytes(64))), "PCM"),  # MP3 in a WAV
    (riff((b"fmt ", fmt(bits=24)), (b"data", bytes(66))), "bits"),
    (riff((b"fmt ", fmt(channels=0)), (b"data", bytes(64))), "channels"),
    (riff((b"fmt ", fmt(rate=0)), (b"data", bytes(64))), "sample rate"),
    (riff((b"fmt ", fmt()), (b"data", bytes(63))), "whole"),
    (riff((b"fmt ", fmt()[:10]), (b"data", bytes(64))), "fmt"),
])
def test_bad_audio_rejected_naming_the_problem(data, fragment):
    with pytest.raises(ValidationFailed) as caught:
        check_audio(data)
    assert caught.value.field == "audio"
    assert fragment.lower() in caught.value.message.lower(), caught.value.message


def test_truncated_data_chunk_is_named():
    good = riff((b"fmt ", fmt()), (b"data", bytes(64)))
    # The data chunk claims more than the file holds, and the RIFF size agrees with the file.
    lying = good[:-72] + b"data" + struct.pack("<I", 6400) + bytes(64)
    with pytest.raises(ValidationFailed) as caught:
        check_audio(lying)
    assert "truncated" in caught.value.message and "'data'" in caught.value.message


@pytest.mark.parametrize("name, voice, field", [("", "en", "name"), ("x" * 101, "en", "name"), ("A", "en; rm -rf /", "voice"), ("A", 5, "voice")])
def test_bad_fields(name, voice, field):
    with pytest.raises(ValidationFailed) as caught:
        check_face_fields(name, voice)
    assert caught.value.field == field
