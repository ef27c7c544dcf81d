"""A typed client can always be generated: the real @graphql-codegen/cli over schema.graphql and
the dashboard's operations (app/web/static/operations.graphql), then `tsc --strict` over the result.

The CLI is installed by this test from the npm registry, pinned by codegen/package-lock.json,
into .data/codegen (reused while the lock file is unchanged). `make test` installs node and
npm first (scripts/ensure-system.sh); the test skips only when npm is not on the machine at all.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app.domain.join_state import JoinStatus

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "codegen"
WORK = ROOT / ".data" / "codegen"
OPERATIONS = ROOT / "app" / "web" / "static" / "operations.graphql"


@pytest.fixture(scope="module")
def codegen() -> Path:
    """The folder holding node_modules/.bin/graphql-codegen and tsc, installed with `npm ci`."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed, so @graphql-codegen/cli cannot run: install Debian's nodejs and npm "
                    "(scripts/ensure-system.sh does, as root)")
    lock = (SOURCE / "package-lock.json").read_text()
    installed = WORK / "node_modules" / ".bin" / "graphql-codegen"
    if not installed.exists() or not (WORK / "package-lock.json").exists() \
            or (WORK / "package-lock.json").read_text() != lock:
        WORK.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(SOURCE / name, WORK / name)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WORK,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    return WORK


def generate(cli: Path, documents: Path, output: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CODEGEN_SCHEMA": str(ROOT / "schema.graphql"), "CODEGEN_DOCUMENTS": str(documents),
           "CODEGEN_OUTPUT": str(output)}
    return subprocess.run([str(cli / "node_modules" / ".bin" / "graphql-codegen"), "--config",
                           str(SOURCE / "codegen.yml")], cwd=cli, env=env, capture_output=True, text=True, timeout=300)


def test_codegen_generates_typed_typescript_for_the_dashboard_operations(codegen, tmp_path):
    output = tmp_path / "operations.ts"
    done = generate(codegen, OPERATIONS, output)
    assert done.returncode == 0, done.stdout + done.stderr
    ts = output.read_text()
    for name in ("PalsPageQuery", "PalActivityQuery",
                 "PalEventsSubscription", "LiveTranscriptSubscription", "JoinFieldsFragment",
                 "PalsPageQueryVariables"):
        assert re.search(rf"^export type {name}\b", ts, re.M), name
    # Enums are closed unions of the domain's names; instants are strings (the DateTime scalar).
    union = re.search(r"^export type JoinStatus =((?:\s*\|\s*'[A-Z_]+')+);", ts, re.M)
    assert union and sorted(re.findall(r"'([A-Z_]+)'", union.group(1))) == sorted(s.name for s in JoinStatus)
    assert re.search(r"startAt: string", ts) and re.search(r"status: JoinStatus", ts)
    assert re.search(r"pageInfo: \{ endCursor: string \| null, hasNextPage: boolean \}", ts)
    typed = subprocess.run([str(codegen / "node_modules" / ".bin" / "tsc"), "--noEmit", "--strict", "--skipLibCheck",
                            "--target", "es2022", str(output)], capture_output=True, text=True, timeout=300)
    assert typed.returncode == 0, typed.stdout + typed.stderr


def test_codegen_refuses_an_operation_the_schema_does_not_have(codegen, tmp_path):
    """The generator really checks operations against schema.graphql (so the test above can fail)."""
    documents = tmp_path / "bad.graphql"
    documents.write_text("query Old { pals { palId } }\n")  # the list before pagination
    done = generate(codegen, documents, tmp_path / "bad.ts")
    assert done.returncode != 0 and "palId" in done.stdout + done.stderr
