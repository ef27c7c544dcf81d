import pytest

from app.domain.errors import ValidationFailed
from app.domain.face_media import check_audio, check_face_fields, check_video

Y4M = b"YUV4MPEG2 W32 H24 F12:1 Ip A1:1 C420jpeg\nFRAME\n" + bytes(32 * 24 * 3 // 2)
WAV = b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + bytes(28)


def test_valid_media_passes():
    check_video(Y4M)
    check_audio(WAV)
    assert check_face_fields(" Dana ", None) == ("Dana", "en")


@pytest.mark.parametrize("data", [b"", b"\x00\x00\x00\x20ftypmp42", b"YUV4MPEG2 W9999 H24\nFRAME\n", b"YUV4MPEG2 W32 H24\n"])
def test_bad_video_rejected_naming_the_field(data):
    with pytest.raises(ValidationFailed) as caught:
        check_video(data)
    assert caught.value.field == "video"


@pytest.mark.parametrize("data", [b"", b"ID3\x03", b"RIFF\x00\x00\x00\x00AVI LIST" + bytes(40)])
def test_bad_audio_rejected(data):
    with pytest.raises(ValidationFailed) as caught:
        check_audio(data)
    assert caught.value.field == "audio"


@pytest.mark.parametrize("name, voice, field", [("", "en", "name"), ("x" * 101, "en", "name"), ("A", "en; rm -rf /", "voice"), ("A", 5, "voice")])
def test_bad_fields(name, voice, field):
    with pytest.raises(ValidationFailed) as caught:
        check_face_fields(name, voice)
    assert caught.value.field == field
