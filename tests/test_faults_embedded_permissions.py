"""Fault: under the common umask 022 the embedded store was world-readable (job names, users, hosts).
Directories are created 0750 and files 0640, by the agent's sink, the writer, folding and compaction."""

from __future__ import annotations

import os
import stat

from agents.config import StoreSettings
from agents.points import Point
from agents.stores.embedded import EmbeddedWriter
from agents.stores.url import parse_store_url
from agents.stores.writers import make_writer

T0 = 1_795_651_200 * 10**9  # 2026-11-26T00:00:00Z
S = 10**9


def test_store_files_are_not_world_readable_under_umask_022(tmp_path):
    root = tmp_path / "store"
    old = os.umask(0o022)
    try:
        sink = make_writer(parse_store_url(f"embedded:{root}"), StoreSettings())
        for i in range(3):
            line = Point("job_info", {"host": "n1", "job": str(i), "user": "alice"}, {"name": "secret-project"},
                         T0 + i * S).to_json().encode()
            assert sink.send(line).outcome.name == "OK"
        # what the agent's sink made: the store, its pending batches and their directory
        made = {p.name: stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}
        assert {m for p, m in made.items() if not p.endswith(".jsonl")} == {0o750}, made
        assert {m for p, m in made.items() if p.endswith(".jsonl")} == {0o640}, made
        w = EmbeddedWriter(root)
        w.write([Point("cpu", {"host": "n1", "cpu": "total"}, {"busy_ratio": 0.5}, T0)])
        w.maintain(min_files=2, retention_days=10_000)
    finally:
        os.umask(old)
    modes = {str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode) for p in [root, *root.rglob("*")]}
    assert any(name.startswith("compact-") for name in (p.split("/")[-1] for p in modes))  # compaction ran
    dirs = {name: m for name, m in modes.items() if (root / name).is_dir()}
    files = {name: m for name, m in modes.items() if not (root / name).is_dir()}
    assert set(dirs.values()) == {0o750}, dirs
    assert set(files.values()) == {0o640}, files
    assert {".lock", ".retained-before"} <= set(files)
