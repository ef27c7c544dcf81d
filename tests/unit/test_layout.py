"""The shape the code promises newcomers, checked: layers, one place for settings, no cycles.

Read from the source with ast (no imports run), so a violation names its file and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules(package: str) -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
    return found


def test_app_never_imports_workers() -> None:
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in _modules("app").values()
           for name, line in _imports(path) if name == "workers" or name.startswith("workers.")]
    assert bad == []


def test_domain_does_no_io() -> None:
    io = ("app.db", "app.tables", "app.redis_client", "app.queue", "app.services", "piccolo", "asyncpg",
          "redis", "arq", "httpx", "aiosmtplib")
    bad = [f"{path.relative_to(ROOT)}:{line} imports {name}" for mod, path in _modules("app").items()
           if mod.startswith("app.domain") for name, line in _imports(path)
           if any(name == p or name.startswith(p + ".") for p in io)]
    assert bad == []


def test_workers_never_touch_tables_or_redis_directly() -> None:
    """Workers call services; closing the shared client at shutdown is all they do with Redis."""
    bad = []
    for path in _modules("workers").values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "app.tables":
                bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports app.tables")
            if isinstance(node, ast.ImportFrom) and node.module == "app.redis_client":
                bad += [f"{path.relative_to(ROOT)}:{node.lineno} imports redis_client.{a.name}"
                        for a in node.names if a.name != "close_redis"]
    assert bad == []


def test_environment_is_read_in_app_config_only() -> None:
    bad = []
    for package in ("app", "workers"):
        for mod, path in _modules(package).items():
            if mod == "app.config":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                        isinstance(node.value, ast.Name) and node.value.id == "os":
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} reads os.{node.attr}")
    assert bad == []


def test_no_import_cycles_between_app_modules() -> None:
    """Deferred imports inside functions count too: hiding a cycle there is still a cycle."""
    modules = _modules("app")
    graph = {mod: {name for name, _ in _imports(path) if name in modules and name != mod}
             for mod, path in modules.items()}
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert cycles == []


def test_redis_names_are_spelled_in_app_keys_only() -> None:
    literals = ("arq:queue", "bot-lease:", "pal-events:", "reconcile-lock", "join:", "ingest:")
    bad = []
    for package in ("app", "workers"):
        for mod, path in _modules(package).items():
            if mod == "app.keys":
                continue
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) and \
                        any(node.value.startswith(lit) for lit in literals):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} spells {node.value!r}")
    assert bad == []
