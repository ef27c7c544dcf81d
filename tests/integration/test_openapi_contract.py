"""The OpenAPI document tells the truth: schemathesis against a real server on loopback.

Every operation of /docs/openapi.json gets a bounded number of generated requests, valid
ones and (fewer) invalid ones, with a valid API key, once with generated path ids and once
with ids that exist. No response may be a 5xx, and every response must be documented:
its status, content type, headers and body schema.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app.config import reset_settings
from tests.integration.test_faces_api import moving_y4m, tone_wav, upload
from tests.integration.test_http_limits import serve

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
POSITIVE_EXAMPLES, NEGATIVE_EXAMPLES, KNOWN_ID_EXAMPLES = 20, 8, 5
TIME_CAP = 90.0  # seconds for the whole run; each operation gets an equal share


def _run(operation, strategy, examples: int, base_url: str, key: str, session: requests.Session,
         failures: list[str]) -> None:
    @given(case=strategy)
    @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
              phases=[Phase.explicit, Phase.generate, Phase.shrink],
              suppress_health_check=list(HealthCheck))
    def check(case) -> None:
        case.call_and_validate(base_url=base_url, session=session, headers={"x-api-key": key},
                               checks=CHECKS, timeout=10)

    try:
        check()
    except Exception as exc:  # one line per operation: the rest still run
        failures.append(f"{operation.label}: {type(exc).__name__}: {str(exc)[:1500]}")


def run_contract(base_url: str, key: str, known: dict[str, str]) -> tuple[list[str], int]:
    schema = schemathesis.openapi.from_url(f"{base_url}/docs/openapi.json")
    # Deletions last, so the operations given existing ids find them.
    operations = sorted((result.ok() for result in schema.get_all_operations()),
                        key=lambda operation: operation.method.upper() == "DELETE")
    failures: list[str] = []
    session = requests.Session()
    deadline = time.monotonic() + TIME_CAP
    for operation in operations:
        if time.monotonic() > deadline:
            failures.append(f"time cap of {TIME_CAP:.0f} s reached before {operation.label}")
            break
        _run(operation, operation.as_strategy(), POSITIVE_EXAMPLES, base_url, key, session, failures)
        _run(operation, operation.as_strategy(generation_mode=GenerationMode.NEGATIVE), NEGATIVE_EXAMPLES,
             base_url, key, session, failures)
        names = {p.name for p in operation.path_parameters}
        if names and names <= set(known):
            fixed = {name: known[name] for name in names}
            _run(operation, operation.as_strategy(path_parameters=fixed), KNOWN_ID_EXAMPLES,
                 base_url, key, session, failures)
    return failures, len(operations)


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
async def contract_server(database: None, media_dir: Path):
    async with serve(MEDIA_DIR=str(media_dir)) as port:
        yield f"http://127.0.0.1:{port}"


async def test_the_api_keeps_the_promises_of_its_openapi_document(contract_server, client, api_key, media_dir,
                                                                    monkeypatch):
    monkeypatch.setenv("MEDIA_DIR", str(media_dir))
    reset_settings()
    headers = {"x-api-key": api_key}
    pal = (await client.post("/v2/pals", headers=headers, json={"pal_name": "Anna", "default_face_id": "r90bbd427f71",
                                                               "layers": {"conferencing": {"username": "anna"}}})).json()
    face = (await upload(client, api_key, name="Dana", video=moving_y4m(frames=2), audio=tone_wav(0.2))).json()
    known: dict[str, Any] = {"pal_id": pal["pal_id"], "face_id": face["face_id"]}
    start = time.monotonic()
    failures, operations = await asyncio.to_thread(run_contract, contract_server, api_key, known)
    took = time.monotonic() - start
    print(f"schemathesis: {operations} operations in {took:.1f} s")
    assert operations >= 15
    monkeypatch.undo()
    reset_settings()
    assert failures == [], "\n\n".join(failures)


async def test_the_document_types_bodies_and_errors(client):
    doc = (await client.get("/docs/openapi.json")).json()
    assert "/graphql" not in doc["paths"]
    error = doc["components"]["schemas"]["ErrorBody"]
    assert set(error["properties"]) == {"error", "field", "code"} and error["required"] == ["error"]
    create = doc["paths"]["/v2/pals"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["pal_name"] and "conferencing" in str(body["properties"]["layers"])
    patch = doc["paths"]["/v2/pals/{pal_id}"]["patch"]["requestBody"]["content"]["application/json"]["schema"]
    assert patch["type"] == "array" and patch["items"]["required"] == ["op", "path"]
    conversation = doc["paths"]["/v2/conversations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert conversation["required"] == ["pal_id", "meeting_url"]
    for status in ("400", "401", "403", "413"):
        assert create["responses"][status]["content"]["application/json"]["schema"] == {
            "$ref": "#/components/schemas/ErrorBody"}, status
    assert create["responses"]["200"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/PalView"}
    assert "404" in doc["paths"]["/v2/pals/{pal_id}"]["get"]["responses"]
    assert doc["components"]["securitySchemes"]["ApiKey"] == {
        "type": "apiKey", "name": "x-api-key", "in": "header",
        "description": doc["components"]["securitySchemes"]["ApiKey"]["description"]}
    assert create["security"] == [{"ApiKey": []}]


async def test_405_says_which_methods_are_allowed(client, api_key):
    response = await client.put("/v2/pals", headers={"x-api-key": api_key}, json={})
    assert response.status_code == 405
    assert set(response.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    assert response.json()["error"]
    response = await client.post("/v2/pals/pabc", headers={"x-api-key": api_key}, json={})
    assert response.status_code == 405 and "PATCH" in response.headers["allow"]
