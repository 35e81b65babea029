"""Fault: the disk fills while a batch is written. A batch publishes whole or not at all, no temp file is
left behind, and the retry (which the spool may merge with newer rows, under a new key) adds every row
exactly once. ENOSPC is injected at the pyarrow write boundary, and, where this process may mount, made
real with a tiny tmpfs."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time

import pandas as pd
import pytest

from agents.config import StoreSettings
from agents.points import Point
from agents.query.embedded import EmbeddedReader
from agents.stores.embedded import EmbeddedWriter
from agents.stores.writers import open_sink

T0 = 1_795_651_200 * 10**9  # 2026-11-26T00:00:00Z
S = 10**9


def _round(i: int) -> list[Point]:
    """One round: two measurements, so one batch makes two Parquet files."""
    return [Point("cpu", {"host": "h", "cpu": "total"}, {"busy_ratio": i / 100}, T0 + i * S),
            Point("memory", {"host": "h"}, {"used_bytes": i}, T0 + i * S)]


def _counts(root) -> dict[str, list]:
    with EmbeddedReader(root) as r:
        window = pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 86_400 * S, tz="UTC")
        return {"cpu": r.frame("cpu", ["busy_ratio"], *window)["busy_ratio"].tolist(),
                "memory": r.frame("memory", ["used_bytes"], *window)["used_bytes"].tolist()}


def _leftovers(root) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*") if p.name not in (".lock", ".pending", ".rollups"))


@contextlib.contextmanager
def _disk_full_on_call(monkeypatch, n: int):
    """pyarrow's Parquet writer runs out of space on its n-th call (1-based) from now on."""
    import pyarrow.parquet as pq

    real, calls = pq.write_table, []

    def write_table(table, where, *args, **kwargs):
        calls.append(1)
        if len(calls) >= n:
            if hasattr(where, "write"):
                where.write(b"PAR1" + b"\0" * 100)  # part of the file reached the disk
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    try:
        yield calls
    finally:
        monkeypatch.setattr(pq, "write_table", real)


def test_a_batch_that_hits_a_full_disk_publishes_nothing(tmp_path, monkeypatch):
    w = EmbeddedWriter(tmp_path)
    batch = _round(0)
    with _disk_full_on_call(monkeypatch, 2), pytest.raises(OSError) as raised:
        w.write(batch, key="a" * 32)  # the cpu file is written, the memory file fills the disk
    assert raised.value.errno == errno.ENOSPC
    assert not list(tmp_path.rglob("*.parquet")), "part of the batch was published"
    assert _leftovers(tmp_path) == [], "temp files left behind"
    # The spool merged newer rows into the retry, so it comes back under another key.
    w.write(batch + _round(1), key="b" * 32)
    assert _counts(tmp_path) == {"cpu": [0.0, 0.01], "memory": [0.0, 1.0]}


def test_folding_pending_rows_into_a_full_disk_keeps_them_pending(tmp_path, monkeypatch):
    sink = open_sink(f"embedded:{tmp_path}", StoreSettings(spool_dir=tmp_path.parent / "spool")).sink
    for i in range(3):
        assert sink.send(b"\n".join(p.to_json().encode() for p in _round(i))).outcome.name == "OK"
    w = EmbeddedWriter(tmp_path)
    with _disk_full_on_call(monkeypatch, 4), pytest.raises(OSError):
        w.maintain(min_files=2)  # the first batch folds, the second fills the disk
    assert _leftovers(tmp_path) == []
    assert len(list((tmp_path / ".pending").iterdir())) == 2
    assert _counts(tmp_path) == {"cpu": [0.0, 0.01, 0.02], "memory": [0.0, 1.0, 2.0]}  # readers lose nothing
    w.maintain(min_files=2)
    assert not list((tmp_path / ".pending").iterdir())
    assert _counts(tmp_path) == {"cpu": [0.0, 0.01, 0.02], "memory": [0.0, 1.0, 2.0]}


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs: a real ENOSPC from the kernel. Skipped where this process may not mount."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mnt)],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a tmpfs here: {e}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


def _fill(directory) -> os.PathLike:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_the_agent_pipeline_on_a_really_full_disk_loses_and_duplicates_nothing(tiny_disk, tmp_path):
    root = tiny_disk / "store"
    store = open_sink(f"embedded:{root}", StoreSettings(spool_dir=tmp_path / "spool", flush_interval_seconds=0.01,
                                                        batch_max_points=4))
    try:
        store.enqueue(_round(0))
        assert store.shipper.flush(time.monotonic() + 60)
        filler = _fill(tiny_disk)
        store.enqueue(_round(1))
        assert not store.shipper.flush(time.monotonic() + 60)  # ENOSPC: kept in the spool
        store.enqueue(_round(2))  # the retry now carries newer rows too (one batch of 4 points)
        assert not store.shipper.flush(time.monotonic() + 60)
        assert _leftovers(root) == []
        assert len(list((root / ".pending").iterdir())) == 1
        filler.unlink()
        assert store.shipper.flush(time.monotonic() + 60)
    finally:
        store.close(0)
    assert _counts(root) == {"cpu": [0.0, 0.01, 0.02], "memory": [0.0, 1.0, 2.0]}
    w = EmbeddedWriter(root)
    w.maintain(min_files=2)
    filler = _fill(tiny_disk)
    try:  # a bulk write (ingest, simulate) into the full disk fails whole and leaves nothing behind
        with pytest.raises(OSError) as raised:
            w.write([*_round(3), Point("gpu", {"host": "h", "gpu": "0"}, {"up": 1}, T0 + 3 * S)])
        assert raised.value.errno == errno.ENOSPC
    finally:
        filler.unlink()
    assert _leftovers(root) == []
    assert _counts(root) == {"cpu": [0.0, 0.01, 0.02], "memory": [0.0, 1.0, 2.0]}
