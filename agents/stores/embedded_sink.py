"""EmbeddedSink: the shipper's sink for the embedded Parquet store (spooled JSON points -> EmbeddedWriter)."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

from agents.config import StoreSettings
from agents.points import Point
from agents.stores.result import OK, Outcome, SendResult

log = logging.getLogger("fleetwise.store")


class EmbeddedSink:
    """Spooled JSON points -> the embedded Parquet store, so local writes get the same durability."""

    format = "json"

    def __init__(self, path: Path, settings: StoreSettings | None = None) -> None:
        from agents.stores.embedded import EmbeddedWriter  # pyarrow: only when the embedded store is used

        self.writer = EmbeddedWriter(path)
        self.settings = settings or StoreSettings()
        self._maintained = time.monotonic()

    def send(self, payload: bytes, timeout: float | None = None) -> SendResult:
        points, bad = [], {}
        for line in payload.split(b"\n"):
            if not line:
                continue
            try:
                points.append(Point(**json.loads(line)))
            except (ValueError, TypeError) as e:
                bad[line] = f"not a JSON point: {e}"
        if bad:
            return SendResult(Outcome.REJECTED, next(iter(bad.values())), rejected=bad)
        try:
            # Named by content: a batch resent after a crash between publish and ack replaces its own files.
            self.writer.write(points, key=hashlib.sha256(payload).hexdigest()[:32])
        except OSError as e:  # disk full, permissions: keep the batch
            return SendResult(Outcome.RETRY, f"embedded store: {e}")
        except (ValueError, TypeError) as e:
            # InvalidPoint, mixed field types (pyarrow's errors subclass these): the writer checks and
            # converts everything before publishing a file, so nothing was written and bisection is safe.
            return SendResult(Outcome.REJECTED, f"embedded store refused the batch: {e}")
        if time.monotonic() - self._maintained >= self.settings.compact_interval_seconds:
            self.maintain()
        return OK

    def maintain(self) -> None:
        """Merge small files and apply retention. The agent writes one file per measurement and round, so
        without this a day would hold thousands of files; it runs in the shipper thread, keeping one writer."""
        self._maintained = time.monotonic()
        try:
            merged = self.writer.compact(min_files=self.settings.compact_min_files)
            removed = self.writer.retain(self.settings.retention_days) if self.settings.retention_days else []
        except OSError as e:  # a full disk must not stop the writes; the next interval tries again
            log.warning("embedded store maintenance failed: %s", e)
            return
        if merged or removed:
            log.info("embedded store: %d partitions compacted, %d days past retention removed", merged, len(removed))

    def close(self) -> None:
        close = getattr(self.writer, "close", None)
        if close:
            close()
