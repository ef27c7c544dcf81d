"""GraphQL over HTTP: the plain JSON POST path answers exactly as Strawberry's view does.

A plain `application/json` POST of one operation skips the parts of Strawberry's view that
cost CPU without doing GraphQL's work (app/graphql/transport.py, `_plain_operation`); every
other request takes the view's full path. These tests hold the two to the same answers, and
check that each unusual body still gets the view's own 400.

Real PostgreSQL; the app in-process over ASGI.
"""

from __future__ import annotations

import json

import pytest

from app.graphql.schema import schema

QUERY = "query Pal($id: ID!) { pal(palId: $id) { palId palName pipelineMode createdAt layers } }"


def h(key: str, content_type: str = "application/json", **extra: str) -> dict[str, str]:
    return {"x-api-key": key, "content-type": content_type, **extra}


async def _pal(client, key: str) -> str:
    response = await client.post("/v2/pals", headers={"x-api-key": key}, json={
        "pal_name": "Ada", "system_prompt": "Take notes.", "default_face_id": "r90bbd427f71"})
    assert response.status_code in (200, 201), response.text
    return response.json()["pal_id"]


async def test_plain_posts_and_the_full_path_give_the_same_answer(client, api_key):
    pal_id = await _pal(client, api_key)
    variables = {"id": pal_id}
    # GET always takes Strawberry's full path: the reference.
    reference = await client.get("/graphql", headers={"x-api-key": api_key},
                                 params={"query": QUERY, "variables": json.dumps(variables)})
    assert reference.status_code == 200 and reference.json()["data"]["pal"]["palId"] == pal_id
    for content_type in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        plain = await client.post("/graphql", headers=h(api_key, content_type),
                                  content=json.dumps({"query": QUERY, "variables": variables}))
        assert plain.status_code == 200, (content_type, plain.text)
        assert plain.json() == reference.json()
        assert plain.headers["content-type"].startswith("application/json")
    # A missing PAL keeps its code and message on both paths.
    missing = {"query": QUERY, "variables": {"id": "pnope"}}
    plain = (await client.post("/graphql", headers=h(api_key), content=json.dumps(missing))).json()
    full = (await client.get("/graphql", headers={"x-api-key": api_key},
                             params={"query": QUERY, "variables": json.dumps({"id": "pnope"})})).json()
    assert plain == full
    assert plain["errors"][0]["extensions"]["code"] == "NOT_FOUND"


async def test_mutations_and_operation_names_on_the_plain_path(client, api_key):
    document = ("query A { __typename } "
                "mutation B($i: CreatePalInput!) { createPal(input: $i) { palName } }")
    body = {"query": document, "operationName": "B",
            "variables": {"i": {"palName": "Bo", "systemPrompt": "x", "defaultFaceId": "r90bbd427f71"}}}
    response = await client.post("/graphql", headers=h(api_key), content=json.dumps(body))
    assert response.status_code == 200, response.text
    assert response.json() == {"data": {"createPal": {"palName": "Bo"}}}
    # Naming no operation in a document of two: Strawberry runs the first; both paths alike.
    del body["operationName"]
    plain = await client.post("/graphql", headers=h(api_key), content=json.dumps(body))
    full = await client.post("/graphql", headers=h(api_key, "application/json", accept="multipart/mixed;q=0"),
                             content=json.dumps(body))
    assert plain.status_code == full.status_code == 200
    assert plain.json() == full.json() == {"data": {"__typename": "Query"}}


@pytest.mark.parametrize(("body", "content_type", "reason"), [
    ("not json", "application/json", "Unable to parse request body as JSON"),
    ('[{"query": "{ __typename }"}]', "application/json", "Batching is not enabled"),
    ('{"query": 5}', "application/json", "`query` must be a string or null"),
    ('{"query": "{ __typename }", "variables": []}', "application/json", "`variables` must be an object or null"),
    ('{"query": "{ __typename }", "extensions": 1}', "application/json", "`extensions` must be an object or null"),
    ("{}", "application/json", "No GraphQL query found in the request"),
    ('{"query": "{ __typename }"}', "text/plain", "Unsupported content type"),
])
async def test_unusual_bodies_get_the_views_own_400(client, api_key, body, content_type, reason):
    response = await client.post("/graphql", headers=h(api_key, content_type), content=body)
    assert response.status_code == 400, response.text
    assert reason in response.text


async def test_a_subscription_answered_with_one_document_is_a_400(client, api_key):
    # It used to reach graphql-core's execute and come back as INTERNAL_SERVER_ERROR.
    document = 'subscription S { palEvents(palId: "pnope") { __typename } }'
    response = await client.post("/graphql", headers=h(api_key), content=json.dumps({"query": document}))
    assert response.status_code == 400
    assert response.text == "subscriptions are not allowed when using POST"
    response = await client.get("/graphql", headers={"x-api-key": api_key}, params={"query": document})
    assert response.status_code == 400
    assert response.text == "subscriptions are not allowed when using GET"
    response = await client.get("/graphql", headers={"x-api-key": api_key},
                                params={"query": 'mutation { deletePal(palId: "pnope") }'})
    assert response.status_code == 400
    assert response.text == "mutations are not allowed when using GET"


async def test_an_operation_name_that_is_not_a_string_takes_the_full_path(client, api_key):
    # Strawberry passes it on as it came; graphql-core then finds no such operation.
    body = {"query": "query A { __typename }", "operationName": 7}
    plain = await client.post("/graphql", headers=h(api_key), content=json.dumps(body))
    assert plain.status_code == 400, plain.text


async def test_results_are_encoded_as_compact_json(client, api_key):
    pal_id = await _pal(client, api_key)
    response = await client.post("/graphql", headers=h(api_key),
                                 content=json.dumps({"query": QUERY, "variables": {"id": pal_id}}))
    assert response.status_code == 200
    assert b": " not in response.content.split(b'"layers"')[0]  # no spaces after separators
    expected = await schema.execute(QUERY, variable_values={"id": pal_id},
                                    context_value=_context_for(api_key))
    assert response.json()["data"] == expected.data


def _context_for(api_key: str):
    from app.graphql.context import Context

    return Context(api_key=api_key)
