"""One contract, two APIs: the same scenarios through REST /v2 and through GraphQL.

Each scenario is written once against `Api`, a small client adapter; the `api` fixture runs
it through REST and through GraphQL (as Strawberry's own tests run one suite through every
integration). The adapters translate only the spelling (snake_case vs camelCase, stored
strings vs enum names, HTTP status vs extensions.code); every expected outcome is written
once, so the two APIs can never drift apart unnoticed. Real PostgreSQL and Redis; the app
in-process over ASGI.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

FACE = "r90bbd427f71"
MEET = "https://meet.google.com/abc-defg-hij"


@dataclass(frozen=True)
class Outcome:
    """What a call did: a normalised value, or an error code and the field it names."""

    value: Any = None
    code: str | None = None
    field: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is None


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


PAL_FIELDS = ("pal_id", "pal_name", "system_prompt", "pipeline_mode", "default_face_id", "layers",
              "conferencing_email", "created_at", "updated_at")
CONVERSATION_FIELDS = ("conversation_id", "pal_id", "face_id", "meeting_url", "status", "reason", "join_id")


class Api:
    """The operations the contract covers, as each API spells them."""

    name = ""

    def __init__(self, client: httpx.AsyncClient, key: str) -> None:
        self.client, self.key = client, key

    def as_(self, key: str) -> "Api":
        return type(self)(self.client, key)


class Rest(Api):
    name = "rest"

    async def _call(self, method: str, path: str, body: Any = None, pick: tuple[str, ...] = ()) -> Outcome:
        response = await self.client.request(method, path, json=body, headers={"x-api-key": self.key})
        if response.status_code >= 400:
            error = response.json()
            assert isinstance(error.get("error"), str) and error["error"], error  # a message, always
            return Outcome(code=error.get("code"), field=error.get("field"))
        if response.status_code == 204:
            return Outcome(True)
        data = response.json()
        return Outcome({k: data[k] for k in pick} if pick else data)

    async def create_pal(self, doc: dict[str, Any]) -> Outcome:
        return await self._call("POST", "/v2/pals", doc, PAL_FIELDS)

    async def get_pal(self, pal_id: str) -> Outcome:
        return await self._call("GET", f"/v2/pals/{pal_id}", pick=PAL_FIELDS)

    async def patch_pal(self, pal_id: str, ops: Any) -> Outcome:
        return await self._call("PATCH", f"/v2/pals/{pal_id}", ops, PAL_FIELDS)

    async def delete_pal(self, pal_id: str) -> Outcome:
        return await self._call("DELETE", f"/v2/pals/{pal_id}")

    async def list_pal_ids(self) -> Outcome:
        out = await self._call("GET", "/v2/pals")
        return Outcome([p["pal_id"] for p in out.value["data"]]) if out.ok else out

    async def create_conversation(self, pal_id: str, url: str) -> Outcome:
        return _conversation(await self._call("POST", "/v2/conversations", {"pal_id": pal_id, "meeting_url": url}))

    async def get_conversation(self, cid: str) -> Outcome:
        return _conversation(await self._call("GET", f"/v2/conversations/{cid}"))

    async def end_conversation(self, cid: str) -> Outcome:
        return _conversation(await self._call("POST", f"/v2/conversations/{cid}/end"))


def _conversation(out: Outcome) -> Outcome:
    if not out.ok:
        return out
    view = {k: out.value[k] for k in CONVERSATION_FIELDS}
    return Outcome({**view, "status": None if view["status"] == "unknown" else view["status"]})


PAL_SELECTION = ("palId palName systemPrompt pipelineMode defaultFaceId layers conferencingEmail "
                 "createdAt updatedAt")
CONVERSATION_SELECTION = "conversationId palId faceId meetingUrl status reasonDetail joinId"


class GraphQL(Api):
    name = "graphql"

    async def _call(self, query: str, field: str, **variables: Any) -> Outcome:
        response = await self.client.post("/graphql", json={"query": query, "variables": variables},
                                          headers={"x-api-key": self.key})
        body = response.json()
        if body.get("errors"):
            error = body["errors"][0]
            assert isinstance(error.get("message"), str) and error["message"], error
            extensions = error.get("extensions") or {}
            return Outcome(code=extensions.get("code"), field=extensions.get("field"))
        assert response.status_code == 200, response.text
        return Outcome(body["data"][field])

    @staticmethod
    def _plain(value: dict[str, Any]) -> dict[str, Any]:
        """camelCase keys as snake_case, enum names as the stored strings, numeric IDs as numbers."""
        out = {}
        for key, item in value.items():
            name = _snake(key)
            if name in ("pipeline_mode", "status") and isinstance(item, str):
                item = item.lower()
            if name == "join_id" and item is not None:
                item = int(item)
            out["reason" if name == "reason_detail" else name] = item
        return out

    async def _pal(self, query: str, field: str, **variables: Any) -> Outcome:
        out = await self._call(query, field, **variables)
        return Outcome(self._plain(out.value)) if out.ok else out

    async def create_pal(self, doc: dict[str, Any]) -> Outcome:
        given = {"palName": doc["pal_name"], "layers": doc.get("layers"), "defaultFaceId": doc.get("default_face_id")}
        if "pipeline_mode" in doc:
            given["pipelineMode"] = doc["pipeline_mode"].upper()
        return await self._pal(f"mutation($i: CreatePalInput!) {{ createPal(input: $i) {{ {PAL_SELECTION} }} }}",
                               "createPal", i=given)

    async def get_pal(self, pal_id: str) -> Outcome:
        return await self._pal(f"query($id: ID!) {{ pal(palId: $id) {{ {PAL_SELECTION} }} }}", "pal", id=pal_id)

    async def patch_pal(self, pal_id: str, ops: Any) -> Outcome:
        return await self._pal(f"mutation($id: ID!, $ops: JSON!) {{ patchPal(palId: $id, operations: $ops) "
                               f"{{ {PAL_SELECTION} }} }}", "patchPal", id=pal_id, ops=ops)

    async def delete_pal(self, pal_id: str) -> Outcome:
        return await self._call("mutation($id: ID!) { deletePal(palId: $id) }", "deletePal", id=pal_id)

    async def list_pal_ids(self) -> Outcome:
        out = await self._call("{ pals { nodes { palId } } }", "pals")
        return Outcome([p["palId"] for p in out.value["nodes"]]) if out.ok else out

    async def create_conversation(self, pal_id: str, url: str) -> Outcome:
        return await self._pal(f"mutation($p: ID!, $u: String!) {{ createConversation(palId: $p, meetingUrl: $u) "
                               f"{{ {CONVERSATION_SELECTION} }} }}", "createConversation", p=pal_id, u=url)

    async def get_conversation(self, cid: str) -> Outcome:
        return await self._pal(f"query($c: ID!) {{ conversation(conversationId: $c) {{ {CONVERSATION_SELECTION} }} }}",
                               "conversation", c=cid)

    async def end_conversation(self, cid: str) -> Outcome:
        return await self._pal(f"mutation($c: ID!) {{ endConversation(conversationId: $c) "
                               f"{{ {CONVERSATION_SELECTION} }} }}", "endConversation", c=cid)


@pytest.fixture(params=[Rest, GraphQL], ids=["rest", "graphql"])
def api(request, client, api_key) -> Api:
    return request.param(client, api_key)


@pytest.fixture
def stranger(api, other_api_key) -> Api:
    return api.as_(other_api_key)


ANNA = {"pal_name": "Anna", "default_face_id": FACE, "pipeline_mode": "full",
        "layers": {"conferencing": {"username": "anna", "allowlist": ["alex@acme.com"]}}}


# --- PALs -----------------------------------------------------------------------

async def test_create_read_patch_list_delete(api):
    created = await api.create_pal(ANNA)
    assert created.ok, created
    pal = created.value
    assert (pal["pal_name"], pal["pipeline_mode"], pal["conferencing_email"]) == ("Anna", "full", "anna@tavusinvite.com")
    assert pal["layers"] == ANNA["layers"] and pal["created_at"].endswith("Z")
    assert (await api.get_pal(pal["pal_id"])).value == pal
    patched = await api.patch_pal(pal["pal_id"], [{"op": "replace", "path": "/pal_name", "value": "Ann"},
                                                  {"op": "add", "path": "/layers/conferencing/allowlist/-",
                                                   "value": "bo@acme.com"}])
    assert patched.value["pal_name"] == "Ann"
    assert patched.value["layers"]["conferencing"]["allowlist"] == ["alex@acme.com", "bo@acme.com"]
    assert (await api.get_pal(pal["pal_id"])).value == patched.value
    assert (await api.list_pal_ids()).value == [pal["pal_id"]]
    assert (await api.delete_pal(pal["pal_id"])).ok
    assert await api.get_pal(pal["pal_id"]) == Outcome(code="NOT_FOUND", field="pal_id")
    assert (await api.list_pal_ids()).value == []
    assert await api.delete_pal(pal["pal_id"]) == Outcome(code="NOT_FOUND", field="pal_id")


@pytest.mark.parametrize("doc, code, field", [
    ({"pal_name": ""}, "BAD_USER_INPUT", "pal_name"),
    ({"pal_name": "A", "layers": {"conferencing": {"username": "bot7"}}}, "BAD_USER_INPUT", "layers.conferencing.username"),
    ({"pal_name": "A", "layers": {"conferencing": {"username": "anna", "colour": "red"}}},
     "BAD_USER_INPUT", "layers.conferencing.colour"),
    ({"pal_name": "A", "default_face_id": "rnope"}, "BAD_USER_INPUT", "default_face_id"),
    ({"pal_name": "A", "layers": {"realtime": {"websocket_url": "http://agent.example/x"}}}, "BAD_USER_INPUT", None),
], ids=["empty name", "reserved username", "unknown key", "unknown face", "not a websocket url"])
async def test_create_errors_have_the_same_code_and_field(api, doc, code, field):
    out = await api.create_pal(doc)
    assert (out.code, out.field if field else None) == (code, field), out
    assert (await api.list_pal_ids()).value == []  # nothing was stored


@pytest.mark.parametrize("ops, field", [
    ([{"op": "replace", "path": "/pal_name", "value": ""}], "pal_name"),
    ([{"op": "remove", "path": "/nope"}], None),
    ([{"op": "replace", "path": "/pipeline_mode", "value": "loud"}], "pipeline_mode"),
    ({"op": "not a list"}, None),
], ids=["empty name", "missing path", "unknown mode", "not a list"])
async def test_bad_patches_change_nothing(api, ops, field):
    pal = (await api.create_pal(ANNA)).value
    out = await api.patch_pal(pal["pal_id"], ops)
    assert out.code == "BAD_USER_INPUT" and (field is None or out.field == field), out
    assert (await api.get_pal(pal["pal_id"])).value == pal


async def test_username_clash_across_tenants(api, stranger):
    assert (await api.create_pal(ANNA)).ok
    clash = await stranger.create_pal({**ANNA, "layers": {"conferencing": {"username": "ANNA"}}})
    assert clash == Outcome(code="BAD_USER_INPUT", field="layers.conferencing.username")


async def test_tenants_see_nothing_of_each_other(api, stranger):
    pal = (await api.create_pal(ANNA)).value
    not_found = Outcome(code="NOT_FOUND", field="pal_id")
    assert await stranger.get_pal(pal["pal_id"]) == not_found
    assert await stranger.patch_pal(pal["pal_id"], [{"op": "replace", "path": "/pal_name", "value": "M"}]) == not_found
    assert await stranger.delete_pal(pal["pal_id"]) == not_found
    assert (await stranger.list_pal_ids()).value == []
    assert (await api.get_pal(pal["pal_id"])).value == pal  # untouched


async def test_a_bad_key_is_unauthenticated(api):
    anonymous = api.as_("pal_not-a-key")
    assert (await anonymous.list_pal_ids()).code == "UNAUTHENTICATED"
    assert (await anonymous.create_pal(ANNA)).code == "UNAUTHENTICATED"


# --- conversations -----------------------------------------------------------------

async def test_conversation_life_cycle(api, stranger, redis_queue):
    pal = (await api.create_pal(ANNA)).value
    created = await api.create_conversation(pal["pal_id"], MEET)
    assert created.ok, created
    conversation = created.value
    assert (conversation["pal_id"], conversation["face_id"], conversation["meeting_url"], conversation["status"]) == (
        pal["pal_id"], FACE, MEET, "scheduled")
    assert isinstance(conversation["join_id"], int) and conversation["reason"] is None
    assert (await api.get_conversation(conversation["conversation_id"])).value == conversation
    ended = await api.end_conversation(conversation["conversation_id"])
    assert ended.value == {**conversation, "status": "cancelled", "reason": "ended_by_api"}
    assert await stranger.get_conversation(conversation["conversation_id"]) == Outcome(
        code="NOT_FOUND", field="conversation_id")
    assert await stranger.end_conversation(conversation["conversation_id"]) == Outcome(
        code="NOT_FOUND", field="conversation_id")


@pytest.mark.parametrize("url, code, field", [
    ("https://zoom.us/j/123?pwd=x", "BAD_USER_INPUT", "meeting_url"),
    ("https://example.com/abc-defg-hij", "BAD_USER_INPUT", "meeting_url"),
    ("", "BAD_USER_INPUT", "meeting_url"),
])
async def test_conversation_errors(api, url, code, field, redis_queue):
    pal = (await api.create_pal(ANNA)).value
    assert await api.create_conversation(pal["pal_id"], url) == Outcome(code=code, field=field)


async def test_conversation_for_a_pal_of_another_tenant_is_not_found(api, stranger, redis_queue):
    pal = (await api.create_pal(ANNA)).value
    assert await stranger.create_conversation(pal["pal_id"], MEET) == Outcome(code="NOT_FOUND", field="pal_id")
    assert await api.get_conversation("cnope") == Outcome(code="NOT_FOUND", field="conversation_id")
