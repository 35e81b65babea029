"""EmbeddedSink: the shipper's sink for the embedded store, light enough for the agent process.

Each spooled batch (JSON points) is checked point by point and published as one pending row file
(agents.stores.embedded_rows): no pyarrow, pandas or numpy in the agent. Turning pending files into
Parquet, compaction and retention run in a child process (agents.stores.embedded_maintain) that the
sink starts every compact_interval_seconds, so their memory is given back when they finish.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

from agents.stores.embedded_files import make_root
from agents.stores.embedded_rows import check_points, parse_line, write_pending
from agents.stores.result import OK, Outcome, SendResult
from agents.stores.settings import StoreSettings

log = logging.getLogger("fleetwise.store")


class EmbeddedSink:
    """Spooled JSON points -> pending row files of the embedded store, with the spool's durability."""

    format = "json"
    # Batches are named by their content: the shipper must resend exactly the bytes it sent before a crash.
    content_keyed = True

    def __init__(self, path: Path, settings: StoreSettings | None = None) -> None:
        self.path = Path(path)
        make_root(self.path)
        self.settings = settings or StoreSettings()
        self._maintained = time.monotonic()
        self._child: subprocess.Popen | None = None
        if importlib.util.find_spec("pyarrow") is None:  # looks for it without loading it
            log.warning("embedded store %s: pyarrow is not installed (pip install 'fleetwise[store]'), so the "
                        "agent's batches stay in %s/.pending until maintenance can fold them into Parquet; "
                        "readers see them meanwhile", self.path, self.path)

    def send(self, payload: bytes, timeout: float | None = None) -> SendResult:
        lines = [line for line in payload.split(b"\n") if line]
        points, bad = [], {}
        for line in lines:
            try:
                points.append(parse_line(line))
            except ValueError as e:
                bad[line] = str(e)
        good = [line for line in lines if line not in bad]
        problems = check_points(points)
        for i, reason in problems.items():
            bad[good[i]] = reason
        if bad:
            # Exactly the bad lines: the shipper dead-letters them and sends the rest; nothing was written.
            return SendResult(Outcome.REJECTED, next(iter(bad.values())), rejected=bad)
        try:
            # Named by content: a batch resent after a crash between publish and ack replaces its own file,
            # and once folded into Parquet its key is remembered there.
            write_pending(self.path, payload, hashlib.sha256(payload).hexdigest()[:32])
        except OSError as e:  # disk full, permissions: nothing was published; keep the batch
            return SendResult(Outcome.RETRY, f"embedded store: {e}")
        if time.monotonic() - self._maintained >= self.settings.compact_interval_seconds:
            self.maintain()
        return OK

    def maintain(self) -> subprocess.Popen | None:
        """Start the maintenance child (fold pending rows into Parquet, compact, retention) unless one runs.

        The agent writes one small file per round; without this readers would read thousands of them."""
        self._maintained = time.monotonic()
        if self._child is not None and self._child.poll() is None:
            return None  # the last pass is still running
        if self._child is not None and self._child.returncode not in (0, None):
            log.warning("embedded store maintenance exited with status %d", self._child.returncode)
        cmd = [sys.executable, "-m", "agents.stores.embedded_maintain", str(self.path),
               "--min-files", str(self.settings.compact_min_files), "--nice"]
        if self.settings.retention_days:
            cmd += ["--retention-days", str(self.settings.retention_days)]
        root = Path(__file__).resolve().parents[2]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(root), os.environ.get("PYTHONPATH")]))}
        try:
            self._child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
        except OSError as e:
            log.warning("could not start embedded store maintenance: %s", e)
            self._child = None
        return self._child

    def close(self) -> None:
        """Nothing to release; a running maintenance child finishes on its own (it holds the store lock)."""
