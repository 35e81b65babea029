"""Shared test plumbing: where fixtures live, and the rule for tests that need real services or data.

Tests that need a real server (influxd, prometheus, chromium) or ../shared/data skip with a clear
reason when it is missing, and fail instead when FLEETWISE_REQUIRE_SERVICES=1 or
FLEETWISE_REQUIRE_DATA=1 is set (CI sets both), so nothing that matters is skipped there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
SHARED_DATA = REPO.parent / "shared" / "data"
SMALL_FLEET_START = "2026-11-20T00:00:00Z"


def require_binary(name: str) -> str:
    """Path of a server binary, or skip (fail under FLEETWISE_REQUIRE_SERVICES=1) when absent."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path:
        return path
    message = f"{name} is not installed (make test installs it from Debian's packages)"
    if os.environ.get("FLEETWISE_REQUIRE_SERVICES") == "1":
        pytest.fail(message + "; FLEETWISE_REQUIRE_SERVICES=1 forbids skipping")
    pytest.skip(message)


def require_data(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if path.exists():
        return path
    message = f"{path} is missing (public traces live in ../shared/data)"
    if os.environ.get("FLEETWISE_REQUIRE_DATA") == "1":
        pytest.fail(message + "; FLEETWISE_REQUIRE_DATA=1 forbids skipping")
    pytest.skip(message)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def influxdb_server(tmp_path_factory):
    """A real influxd (Debian's influxdb 1.6.7) on a free 127.0.0.1 port; `.url` is its HTTP base."""
    from tests.services import influxd

    with influxd(tmp_path_factory.mktemp("influxd")) as server:
        yield server


@pytest.fixture(scope="session")
def small_fleet(tmp_path_factory) -> Path:
    """24 nodes x 3 days at 60 s simulated into ROOT/store (with ROOT/store/truth.json); shared by the tests
    that need a small heterogeneous fleet (~2 s to simulate)."""
    from agents.simulate import simulate

    root = tmp_path_factory.mktemp("fleet")
    simulate(nodes=24, days=3, interval=60, seed=1, store=f"embedded:{root / 'store'}", start=SMALL_FLEET_START)
    return root


@pytest.fixture(scope="session")
def small_fleet_analyzed(small_fleet):
    """`fleetwise analyze` of small_fleet into ROOT/state: (AnalyzeResult, the simulator's truth)."""
    import json

    from analyzer.pipeline import analyze

    result = analyze(f"embedded:{small_fleet / 'store'}", state_dir=small_fleet / "state", n_jobs=2)
    return result, json.loads((small_fleet / "store" / "truth.json").read_text())
