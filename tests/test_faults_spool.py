"""Faults at the spool: a really full disk (a small tmpfs in a private mount namespace), permissions, a damaged
spool file. Every round the agent hands the spool is either queued or counted in dropped_points."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agents.stores.spool import Spool
from tests.conftest import REPO
from tests.helpers import free_port

# Runs inside `unshare --user --map-root-user --mount` with argv[1] a fresh 4 MiB tmpfs: a real ENOSPC.
FULL_DISK = textwrap.dedent("""
    import io, json, logging, os, sqlite3, sys
    from agents.points import Point
    from agents.config import StoreSettings
    from agents.stores.writers import open_sink

    disk, port = sys.argv[1], int(sys.argv[2])
    log = io.StringIO()
    logging.basicConfig(stream=log, level=logging.WARNING, format="%(levelname)s %(message)s")
    # The store is down (nothing listens on the port) and the shipper is not started: everything stays queued.
    store = open_sink(f"influxdb://127.0.0.1:{port}/fleet",
                      StoreSettings(spool_dir=os.path.join(disk, "spool"), spool_max_bytes=64 << 20))
    # Then fill the disk but for 400 kB: about 60 rounds fit, the rest of the first half does not.
    st = os.statvfs(disk)
    filler = os.path.join(disk, "filler")
    with open(filler, "wb") as f:
        f.write(b"\\0" * (st.f_bavail * st.f_frsize - 400_000))
    total, reported, free_after = 0, [], []
    for i in range(300):
        points = [Point("probe", {"host": "h", "k": str(k)}, {"pad": "x" * 500, "v": i}, i * 1000 + k)
                  for k in range(10)]
        points += store.status_points("h", i * 1000 + 999)
        reported.append(points[-1].fields["dropped_points"])  # the agent's self-metric for this round
        total += len(points)
        store.enqueue(points)
        if i == 150:
            os.unlink(filler)  # space comes back: rounds must be committed again, the WAL must not eat it
        elif i > 150:
            st = os.statvfs(disk)
            free_after.append(st.f_bavail * st.f_frsize)
    stats = store.spool.stats()
    path = store.spool.path
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    queued_points = db.execute("SELECT coalesce(sum(points), 0) FROM batches").fetchone()[0]
    late_points = db.execute("SELECT count(*) FROM batches WHERE CAST(payload AS TEXT) LIKE '%v=299i %'").fetchone()[0]
    db.close()
    wal = os.path.getsize(f"{path}-wal") if os.path.exists(f"{path}-wal") else 0
    print(json.dumps({"total": total, "queued": queued_points, "dropped": stats.dropped_points,
                      "reported": reported, "min_free_after": min(free_after), "wal": wal,
                      "late_batches": late_points, "log": log.getvalue()}))
""")


def _unshare_tmpfs(script: str, *args: str) -> subprocess.CompletedProcess:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is not installed")
    probe = subprocess.run([unshare, "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace here: {probe.stderr.decode(errors='replace').strip()}")
    mountpoint = Path(os.environ.get("TMPDIR", "/tmp")) / f"fw-fulldisk-{os.getpid()}"
    mountpoint.mkdir(exist_ok=True)
    try:
        shell = 'mount -t tmpfs -o size=4m tmpfs "$1" && shift && exec "$@"'
        return subprocess.run([unshare, "--user", "--map-root-user", "--mount", "sh", "-c", shell, "sh",
                               str(mountpoint), sys.executable, "-c", script, str(mountpoint), *args],
                              capture_output=True, text=True, timeout=300, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    finally:
        mountpoint.rmdir()


def test_full_disk_counts_every_lost_round_and_the_wal_does_not_refill_the_disk():
    result = _unshare_tmpfs(FULL_DISK, str(free_port()))
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout)
    # 300 rounds of 10 probe points + the spool's own status point each.
    assert out["total"] == 300 * 11
    # The disk was full for a while (all but 400 kB taken by the filler): rounds were lost...
    assert out["dropped"] > 0
    # ... and each lost point is counted, none silently: queued + dropped is every point handed over.
    assert out["queued"] + out["dropped"] == out["total"]
    # The self-metric said so while it happened: non-decreasing, and non-zero before the end.
    reported = out["reported"]
    assert reported == sorted(reported) and reported[-1] > 0
    assert "dropped" in out["log"] and "full" in out["log"]
    # Space freed at round 150 is used for rounds again (the last round has v=299i) ...
    assert out["late_batches"] > 0
    # ... but the WAL does not grow back into it: the file system keeps room, the WAL stays small.
    assert out["min_free_after"] > 0
    assert out["wal"] <= 2**20


def test_spool_files_are_owner_only_under_umask_022(tmp_path):
    old = os.umask(0o022)
    try:
        spool = Spool(tmp_path / "spool" / "s.sqlite", max_bytes=1 << 20)
        spool.enqueue(b"m f=1i 1", "line", 1)
        names = [p for p in (tmp_path / "spool").iterdir()]
        modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in names}
        spool.close()
    finally:
        os.umask(old)
    # The database, its WAL and shared-memory files, and the lock file: nobody but the agent's user.
    assert {"s.sqlite", "s.sqlite-wal", "s.sqlite-shm", "s.sqlite.lock"} <= set(modes)
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes


def test_a_damaged_spool_file_is_set_aside_and_a_new_spool_starts(tmp_path, caplog):
    path = tmp_path / "s.sqlite"
    path.write_bytes(b"this is not an SQLite database, it is what a torn copy leaves" * 100)
    spool = Spool(path, max_bytes=1 << 20)
    try:
        assert spool.enqueue(b"m f=1i 1", "line", 1) is not None
        assert spool.stats().queued_batches == 1
    finally:
        spool.close()
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("s.sqlite.corrupt-")]
    assert len(aside) == 1 and aside[0].read_bytes().startswith(b"this is not an SQLite database")
    assert any(aside[0].name in r.getMessage() for r in caplog.records)
    with sqlite3.connect(path) as db:  # the new spool is a real database
        assert db.execute("SELECT count(*) FROM batches").fetchone() == (1,)
