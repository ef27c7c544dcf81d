"""Per-account quotas: PALs, faces, face media bytes, and the size of a PAL's layers.

Each is a setting; going over one is a 403 with code QUOTA_EXCEEDED naming it, on REST
and GraphQL alike (both go through the same services).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator

import pytest

from app.config import reset_settings
from app.services import pals as pal_service
from app.services.accounts import create_account
from tests.fixtures import graphql
from tests.integration.test_faces_api import moving_y4m, tone_wav, upload

FACE = "r90bbd427f71"
GQL_CREATE_PAL = "mutation($i: CreatePalInput!) { createPal(input: $i) { palId } }"
GQL_CREATE_FACE = 'mutation($n: String!) { createFace(name: $n) { faceId } }'


@pytest.fixture
def quotas(monkeypatch, tmp_path) -> Iterator[Callable[..., None]]:
    """Set quota environment variables for one test (media under a temporary MEDIA_DIR)."""
    monkeypatch.setenv("MEDIA_DIR", str(tmp_path))

    def set_quotas(**values: int) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, str(value))
        reset_settings()

    set_quotas()
    yield set_quotas
    monkeypatch.undo()
    reset_settings()


def h(key: str) -> dict[str, str]:
    return {"x-api-key": key}


def assert_quota(response, quota: str, field: str | None = None) -> None:
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["code"] == "QUOTA_EXCEEDED" and quota in body["error"], body
    assert body.get("field") == field


def assert_gql_quota(result: dict, quota: str) -> None:
    error = result["errors"][0]
    assert error["extensions"]["code"] == "QUOTA_EXCEEDED" and quota in error["message"], result


async def test_pals_per_account(client, api_key, other_api_key, quotas):
    quotas(MAX_PALS_PER_ACCOUNT=2)
    ids = []
    for name in ("A", "B"):
        response = await client.post("/v2/pals", json={"pal_name": name}, headers=h(api_key))
        assert response.status_code == 200, response.text
        ids.append(response.json()["pal_id"])
    assert_quota(await client.post("/v2/pals", json={"pal_name": "C"}, headers=h(api_key)), "MAX_PALS_PER_ACCOUNT")
    assert_gql_quota(await graphql(client, api_key, GQL_CREATE_PAL, i={"palName": "C"}), "MAX_PALS_PER_ACCOUNT")
    # Another account has its own quota; deleting one frees a place.
    assert (await client.post("/v2/pals", json={"pal_name": "X"}, headers=h(other_api_key))).status_code == 200
    assert (await client.delete(f"/v2/pals/{ids[0]}", headers=h(api_key))).status_code == 204
    assert (await client.post("/v2/pals", json={"pal_name": "C"}, headers=h(api_key))).status_code == 200
    assert len((await client.get("/v2/pals", headers=h(api_key))).json()["data"]) == 2


async def test_concurrent_creates_cannot_overshoot_the_pal_quota(clean_db, quotas):
    quotas(MAX_PALS_PER_ACCOUNT=3)
    account, _ = await create_account("racer")
    results = await asyncio.gather(*(pal_service.create_pal(account.id, {"pal_name": f"P{i}"}) for i in range(8)),
                                   return_exceptions=True)
    assert sum(isinstance(r, dict) for r in results) == 3
    assert all(getattr(r, "code", None) == "QUOTA_EXCEEDED" for r in results if not isinstance(r, dict))


async def test_faces_per_account(client, api_key, quotas):
    quotas(MAX_FACES_PER_ACCOUNT=2)
    assert (await upload(client, api_key, name="One")).status_code == 200
    assert (await graphql(client, api_key, GQL_CREATE_FACE, n="Two"))["data"]["createFace"]["faceId"]
    assert_quota(await upload(client, api_key, name="Three"), "MAX_FACES_PER_ACCOUNT")
    assert_gql_quota(await graphql(client, api_key, GQL_CREATE_FACE, n="Three"), "MAX_FACES_PER_ACCOUNT")
    # Stock faces never count, and are still listed.
    faces = (await client.get("/v2/faces", headers=h(api_key))).json()["data"]
    assert len([f for f in faces if not f["stock"]]) == 2 and any(f["stock"] for f in faces)


async def test_face_media_bytes_per_account(client, api_key, other_api_key, quotas, tmp_path):
    video, audio = moving_y4m(), tone_wav(0.5)
    quotas(MAX_FACE_MEDIA_BYTES_PER_ACCOUNT=len(video) + len(audio) + 10)
    first = await upload(client, api_key, name="Dana", video=video, audio=audio)
    assert first.status_code == 200, first.text
    assert_quota(await upload(client, api_key, name="Eve", video=video), "MAX_FACE_MEDIA_BYTES_PER_ACCOUNT", "video")
    assert_quota(await upload(client, api_key, name="Eve", audio=audio), "MAX_FACE_MEDIA_BYTES_PER_ACCOUNT", "audio")
    # Nothing of the refused uploads was written; a face without media still fits.
    assert len(list((tmp_path / "faces").iterdir())) == 1
    assert (await upload(client, api_key, name="Gen")).status_code == 200
    assert (await upload(client, other_api_key, name="Other", video=video, audio=audio)).status_code == 200
    # Deleting the face frees its bytes.
    assert (await client.delete(f"/v2/faces/{first.json()['face_id']}", headers=h(api_key))).status_code == 204
    assert (await upload(client, api_key, name="Eve", video=video)).status_code == 200


async def test_layers_size_per_pal(client, api_key, quotas):
    quotas(MAX_LAYERS_BYTES=200)
    small = {"pal_name": "A", "layers": {"notes": "x" * 100}}
    pal = await client.post("/v2/pals", json=small, headers=h(api_key))
    assert pal.status_code == 200, pal.text
    big = {"pal_name": "B", "layers": {"notes": "x" * 300}}
    assert_quota(await client.post("/v2/pals", json=big, headers=h(api_key)), "MAX_LAYERS_BYTES", "layers")
    grow = [{"op": "add", "path": "/layers/more", "value": "y" * 150}]
    response = await client.patch(f"/v2/pals/{pal.json()['pal_id']}", json=grow, headers=h(api_key))
    assert_quota(response, "MAX_LAYERS_BYTES", "layers")
    result = await graphql(client, api_key, GQL_CREATE_PAL, i={"palName": "B", "layers": {"notes": "x" * 300}})
    assert_gql_quota(result, "MAX_LAYERS_BYTES")
    assert result["errors"][0]["extensions"]["field"] == "layers"
    # The conferencing layer counts like any other and fits easily.
    ok = {"pal_name": "C", "default_face_id": FACE, "layers": {"conferencing": {"username": "anna-c"}}}
    assert (await client.post("/v2/pals", json=ok, headers=h(api_key))).status_code == 200
