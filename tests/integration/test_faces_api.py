"""Custom faces: upload a likeness video and a voice, and the bot shows and plays them."""

from __future__ import annotations

import asyncio
import io
import math
import shutil
import struct
import wave

import pytest

from tests.fixtures import run_worker


def moving_y4m(width: int = 64, height: int = 48, frames: int = 24) -> bytes:
    """A small YUV4MPEG2 clip whose brightness sweeps, so frames visibly change."""
    out = io.BytesIO()
    out.write(f"YUV4MPEG2 W{width} H{height} F12:1 Ip A1:1 C420jpeg\n".encode())
    for i in range(frames):
        out.write(b"FRAME\n")
        out.write(bytes([(i * 10 + x) % 256 for x in range(width)]) * height)
        out.write(bytes([128]) * (width * height // 2))
    return out.getvalue()


def tone_wav(seconds: float = 2.0, rate: int = 16000) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(struct.pack("<h", int(12000 * math.sin(2 * math.pi * 440 * n / rate)))
                               for n in range(int(seconds * rate))))
    return out.getvalue()


async def upload(client, key, **fields):
    """multipart/form-data, as `curl -F name=... -F video=@likeness.y4m` sends it."""
    files = {name: (None, value) for name, value in fields.items() if name not in ("video", "audio")}
    if "video" in fields:
        files["video"] = ("likeness.y4m", fields["video"], "application/octet-stream")
    if "audio" in fields:
        files["audio"] = ("voice.wav", fields["audio"], "audio/wav")
    return await client.post("/v2/faces", files=files, headers={"x-api-key": key})


async def test_upload_list_use_and_delete(client, api_key, other_api_key, tmp_path, monkeypatch):
    from app.config import reset_settings

    monkeypatch.setenv("MEDIA_DIR", str(tmp_path))
    reset_settings()
    response = await upload(client, api_key, name="Dana", voice="en-gb", video=moving_y4m(), audio=tone_wav())
    assert response.status_code == 200, response.text
    face = response.json()
    assert (face["video"], face["audio"], face["stock"]) == ("uploaded", "uploaded", False)
    assert (tmp_path / "faces" / face["face_id"] / "likeness.y4m").exists()
    mine = [f["face_id"] for f in (await client.get("/v2/faces", headers={"x-api-key": api_key})).json()["data"]]
    theirs = [f["face_id"] for f in (await client.get("/v2/faces", headers={"x-api-key": other_api_key})).json()["data"]]
    assert face["face_id"] in mine and face["face_id"] not in theirs
    # Another account can neither use nor delete it.
    body = {"pal_name": "X", "default_face_id": face["face_id"], "layers": {"conferencing": {"username": "xx"}}}
    assert (await client.post("/v2/pals", json=body, headers={"x-api-key": other_api_key})).status_code == 400
    assert (await client.delete(f"/v2/faces/{face['face_id']}", headers={"x-api-key": other_api_key})).status_code == 404
    # In use by a PAL: not deletable; stock faces never are.
    assert (await client.post("/v2/pals", json=body, headers={"x-api-key": api_key})).status_code == 200
    assert (await client.delete(f"/v2/faces/{face['face_id']}", headers={"x-api-key": api_key})).status_code == 409
    assert (await client.delete("/v2/faces/r90bbd427f71", headers={"x-api-key": api_key})).status_code == 404
    voice_only = (await upload(client, api_key, name="Eli", voice="en-us+m3")).json()
    assert (voice_only["video"], voice_only["audio"]) == ("generated", "generated")
    assert (await client.delete(f"/v2/faces/{voice_only['face_id']}", headers={"x-api-key": api_key})).status_code == 204
    monkeypatch.delenv("MEDIA_DIR")
    reset_settings()


@pytest.mark.parametrize(
    "fields, field",
    [
        ({"name": "A", "video": b"\x00\x00\x00\x18ftypmp42"}, "video"),
        ({"name": "A", "audio": b"ID3\x04 not a wav"}, "audio"),
        ({"name": "", "voice": "en"}, "name"),
        ({"name": "A", "voice": "en; rm -rf /"}, "voice"),
    ],
)
async def test_bad_uploads_are_400_naming_the_field(client, api_key, fields, field):
    response = await upload(client, api_key, **fields)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    "fields, field, fragment",
    [
        # A header and one FRAME marker, no picture: once accepted, and Chromium aborts on it.
        ({"name": "A", "video": b"YUV4MPEG2 W1920 H1080\nFRAME\n"}, "video", "truncated"),
        ({"name": "A", "video": moving_y4m()[:-1]}, "video", "truncated: frame 24 has"),
        ({"name": "A", "video": moving_y4m().replace(b"C420jpeg", b"C444")}, "video", "4:2:0"),
        ({"name": "A", "audio": tone_wav()[:-10]}, "audio", "truncated"),
        ({"name": "A", "audio": b"RIFF" + (36).to_bytes(4, "little") + b"WAVEfmt " + bytes(28)}, "audio", "fmt"),
    ],
)
async def test_truncated_or_lying_media_is_a_400_naming_the_problem(client, api_key, fields, field, fragment):
    response = await upload(client, api_key, **fields)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field and fragment in response.json()["error"], response.json()
    assert [f for f in (await client.get("/v2/faces", headers={"x-api-key": api_key})).json()["data"]
            if not f["stock"]] == []


@pytest.mark.browser
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium not installed")
async def test_bot_shows_the_uploaded_video_and_plays_the_uploaded_voice(
        client, api_key, redis_queue, meet_lookalike, lookalike_browser_args, tmp_path, monkeypatch):
    from app.config import reset_settings

    monkeypatch.setenv("MEDIA_DIR", str(tmp_path))
    monkeypatch.setenv("BOT_BROWSER_ARGS", lookalike_browser_args)
    reset_settings()
    face = (await upload(client, api_key, name="Dana", video=moving_y4m(), audio=tone_wav())).json()
    pal = (await client.post("/v2/pals", json={"pal_name": "Dana", "default_face_id": face["face_id"]},
                             headers={"x-api-key": api_key})).json()
    code = "cus-tomf-ace"
    url = meet_lookalike.configure(code, "ended", admit_after=0.3, end_after=4.0)
    response = await client.post("/v2/conversations", json={"pal_id": pal["pal_id"], "meeting_url": url},
                                 headers={"x-api-key": api_key})
    assert response.status_code == 200, response.text
    await asyncio.wait_for(run_worker(), timeout=90)
    record = meet_lookalike.record(code)
    assert record.admitted and record.video_live() and record.audio_live()
    status = (await client.get(f"/v2/conversations/{response.json()['conversation_id']}",
                               headers={"x-api-key": api_key})).json()
    assert (status["status"], status["reason"]) == ("left", "meeting_ended")
    monkeypatch.delenv("MEDIA_DIR")
    monkeypatch.delenv("BOT_BROWSER_ARGS")
    reset_settings()


async def test_graphql_create_and_delete_face(client, api_key):
    from tests.fixtures import graphql

    created = await graphql(client, api_key, 'mutation { createFace(name: "Gus", voice: "en-us+m3") { faceId stock video audio } }')
    face = created["data"]["createFace"]
    assert (face["stock"], face["video"], face["audio"]) == (False, "generated", "generated")
    bad = await graphql(client, api_key, 'mutation { createFace(name: "Gus", voice: "$(reboot)") { faceId } }')
    assert bad["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "voice"}
    deleted = await graphql(client, api_key, "mutation($id: ID!) { deleteFace(faceId: $id) }", id=face["faceId"])
    assert deleted["data"]["deleteFace"] is True
    stock = await graphql(client, api_key, 'mutation { deleteFace(faceId: "r90bbd427f71") }')
    assert stock["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_binary_media_sent_as_a_plain_form_field_is_a_clear_400(client, api_key):
    # A part without a filename is a text field to the multipart parser, not a file.
    response = await client.post("/v2/faces", headers={"x-api-key": api_key},
                                 data={"name": "Dana"}, files={"video": (None, b"\x89PNG\r\n\x1a\n\xff\xfe")})
    assert response.status_code == 400, response.text
    assert "filename" in response.json()["error"]
    assert (await client.get("/v2/faces", headers={"x-api-key": api_key})).status_code == 200
