"""Imports flow one way: dashboard -> analyzer -> agents; fleetwise/ is only the command line.

Every module's AST is walked, so an import inside a function (the lazy kind the CLI uses) counts too.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from tests.conftest import REPO

# package -> packages it must never import
FORBIDDEN = {
    "agents": ("analyzer", "dashboard", "fleetwise"),
    "analyzer": ("dashboard", "fleetwise"),
    "dashboard": ("fleetwise",),
}
# Inside agents: the stores layer (writers, readers, spool) takes plain settings, never the agent's config,
# so simulate, ingest and analyze reach a store the way the agent does without the agent's configuration.
FORBIDDEN_MODULES = {
    "agents/stores": ("agents.config", "agents.agent_main", "agents.runner"),
    "agents/query": ("agents.config", "agents.agent_main", "agents.runner"),
}


def imported_modules(path: Path, root: Path = REPO) -> set[str]:
    """Absolute module names imported anywhere in the file (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = ".".join(path.relative_to(root).with_suffix("").parts[:-1])
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _violations(directory: str, forbidden: tuple[str, ...], root: Path = REPO) -> list[str]:
    found = []
    for path in sorted((root / directory).rglob("*.py")):
        for name in sorted(imported_modules(path, root)):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                found.append(f"{path.relative_to(root)} imports {name}")
    return found


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_only_downwards(package):
    assert _violations(package, FORBIDDEN[package]) == []


@pytest.mark.parametrize("directory", sorted(FORBIDDEN_MODULES))
def test_stores_and_queries_do_not_import_the_agent(directory):
    assert _violations(directory, FORBIDDEN_MODULES[directory]) == []


def test_the_walker_sees_lazy_and_relative_imports(tmp_path):
    # The contract is only as good as the walker: a function-level import and a relative one must show.
    (tmp_path / "agents" / "stores").mkdir(parents=True)
    probe = tmp_path / "agents" / "stores" / "probe.py"
    probe.write_text("def f():\n    from fleetwise import cli\n    from ..config import Config\n")
    names = imported_modules(probe, tmp_path)
    assert {"fleetwise", "fleetwise.cli", "agents.config", "agents.config.Config"} <= names
    assert _violations("agents", FORBIDDEN["agents"], tmp_path) == [
        "agents/stores/probe.py imports fleetwise", "agents/stores/probe.py imports fleetwise.cli"]
    assert _violations("agents/stores", FORBIDDEN_MODULES["agents/stores"], tmp_path) == [
        "agents/stores/probe.py imports agents.config", "agents/stores/probe.py imports agents.config.Config"]


def test_version_is_pyprojects():
    from agents import __version__
    from fleetwise import __version__ as cli_version

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert __version__ == cli_version == project["version"]
