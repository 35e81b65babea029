"""The durable spool: an SQLite (WAL) queue of batches between the agent loop and the store.

A batch is committed here before anything tries to send it and deleted only once the store has
acknowledged it, so a store outage, a crash or a kill -9 loses nothing that was committed. The
payload is opaque bytes with a format tag ("line": InfluxDB line protocol, "json": one JSON point
per line for the embedded store). The queue is bounded by payload bytes: when full, the OLDEST
batches go first (recent data is what operators look at), and every drop is counted in the meta
table so the count survives restarts and is exported as the `spool` measurement.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("fleetwise.spool")

DEAD_LETTER_KEEP = 10_000  # rows; the dead_letter table is for diagnosis, not an archive
_CACHE_KIB = 64  # SQLite keeps at least 10 pages whatever this says

_SCHEMA = """
CREATE TABLE IF NOT EXISTS batches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    format TEXT NOT NULL,
    points INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    created REAL NOT NULL,
    payload BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letter (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    format TEXT NOT NULL,
    line BLOB NOT NULL,
    message TEXT NOT NULL,
    time REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value REAL NOT NULL);
"""

COUNTERS = ("dropped_batches", "dropped_points", "dead_letter_points", "sent_points", "last_success_timestamp_seconds")


class SpoolError(RuntimeError):
    pass


@dataclass(frozen=True)
class Batch:
    ids: tuple[int, ...]  # one or more spool rows sent together, oldest first
    format: str
    points: int
    payload: bytes
    created: float  # of the oldest row


@dataclass(frozen=True)
class SpoolStats:
    queued_batches: int
    queued_bytes: int
    dropped_batches: int
    dropped_points: int
    dead_letter_points: int
    sent_points: int
    last_success_timestamp_seconds: float


class Spool:
    """One SQLite file, one writer process (an exclusive lock file enforces it), any number of threads."""

    def __init__(self, path: Path | str, max_bytes: int = 256 * 2**20, synchronous: str = "FULL") -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self._synchronous = synchronous.upper()
        if self.path.is_dir():
            raise SpoolError(f"spool {self.path} is a directory, not a spool file "
                             "(set [store] spool_dir to a directory of its own)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o750)
            self._lock_fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise SpoolError(f"cannot use spool {self.path}: {e.strerror or e} "
                             "(set [store] spool_dir to a writable directory)") from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            raise SpoolError(f"spool {self.path} is in use by another agent") from None
        self._mutex = threading.Lock()
        self._drop_logged_at, self._drops_unlogged = -1e9, 0
        # Drops that could not be written to the meta table (the disk was full): added by the next commit,
        # and counted in stats() meanwhile, so the spool measurement never under-reports a loss.
        self._pending: dict[str, int] = {}
        try:
            try:
                self._open()
            except sqlite3.DatabaseError as e:
                if isinstance(e, sqlite3.OperationalError) and _full(e):
                    raise
                self._close_db()
                self._set_aside(e)
                self._open()
        except (sqlite3.Error, OSError) as e:
            self._close_db()
            os.close(self._lock_fd)
            reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
            raise SpoolError(f"cannot use spool {self.path}: {reason}") from None

    def _close_db(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def _open(self) -> None:
        # Owner-only: the spool holds the fleet's telemetry and is nobody else's business (SQLite gives the
        # -wal and -shm files the database file's mode).
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.fchmod(fd, 0o600)
        os.close(fd)
        max_bytes = self.max_bytes
        # Autocommit mode: every statement group below is an explicit BEGIN IMMEDIATE ... COMMIT.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
        # Both must precede the first table. Large pages (up to 64 KiB, at most 1/1024 of the bound): a
        # batch is one blob of up to ~1 MB, and fewer, larger overflow pages make commit and delete cheaper
        # (measured: 4.4 -> 3.2 ms per 5000-point enqueue+ack). auto_vacuum lets drops give pages back.
        self.page_size = 4096
        while self.page_size < 65536 and self.page_size * 2048 <= max_bytes:
            self.page_size *= 2
        self._db.execute(f"PRAGMA page_size={self.page_size}")
        self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed batch survives power loss, not only a process crash.
        self._db.execute(f"PRAGMA synchronous={'NORMAL' if self._synchronous == 'NORMAL' else 'FULL'}")
        # The WAL is part of the disk footprint: checkpoint and truncate it in proportion to the bound.
        wal_pages = max(4, min(1000, max_bytes // self.page_size // 4))
        self._db.execute(f"PRAGMA wal_autocheckpoint={wal_pages}")
        self._db.execute(f"PRAGMA journal_size_limit={max(65536, min(2**20, max_bytes // 4))}")
        # Page cache: SQLite's 2 MB default fills with the batches' overflow pages and stays in the agent's
        # RSS (budget 40 MB); each batch is written once and read once, so the OS page cache serves as well.
        self._db.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
        self._db.executescript(_SCHEMA)
        self._db.execute("SELECT count(*) FROM meta").fetchone()  # reads a page: a damaged file says so here
        self._queued_bytes = self._db.execute("SELECT coalesce(sum(bytes), 0) FROM batches").fetchone()[0]

    def _set_aside(self, error: Exception) -> None:
        """A file that is not a usable SQLite database (a torn copy, another program's file): keep it for
        inspection under another name and start an empty spool, rather than crash-loop under Restart=always."""
        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        try:
            os.replace(self.path, aside)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        except OSError as e:
            os.close(self._lock_fd)
            raise SpoolError(f"spool {self.path} is damaged ({error}) and cannot be moved aside: "
                             f"{e.strerror or e}") from None
        log.error("spool %s was not a usable database (%s): moved to %s, starting an empty spool; what it held is "
                  "not sent", self.path, error, aside.name)

    # -- writing side (the agent loop) --------------------------------------------------------------------
    def enqueue(self, payload: bytes, fmt: str, points: int) -> int | None:
        """Commit a batch; returns its id, or None when the batch alone exceeds the bound (dropped, counted)."""
        size = len(payload)
        with self._mutex:
            if size > self.max_bytes:
                self._lost(1, points)
                log.warning("a batch of %d bytes exceeds spool_max_bytes=%d on its own: dropped", size, self.max_bytes)
                self._persist_pending()
                return None
            if not self._disk_has_room(size):
                self._lost(1, points)
                self._note_drops(points, "the disk holding the spool is full")
                return None
            queued = self._queued_bytes
            try:
                with self._tx():
                    self._make_room(size)
                    cur = self._db.execute(
                        "INSERT INTO batches (format, points, bytes, created, payload) VALUES (?, ?, ?, ?, ?)",
                        (fmt, points, size, time.time(), payload))
                    self._bump(self._pending)
            except sqlite3.OperationalError as e:
                if not _full(e):
                    raise
                self._queued_bytes = queued  # rolled back: nothing was deleted
                self._lost(1, points)
                self._note_drops(points, "the disk holding the spool is full")
                self._give_back_wal()
                return None
            self._pending = {}
            self._queued_bytes += size
            return cur.lastrowid

    # -- a full disk ----------------------------------------------------------------------------------------
    def _disk_has_room(self, size: int) -> bool:
        """Whether committing `size` more bytes leaves the file system a margin. A commit needs the batch's pages
        twice (WAL, then the database at checkpoint) plus a few pages of b-tree, meta and free list; below that SQLite
        would fail half-way. When short, give the WAL's space back first (it only holds committed pages)."""
        need = 2 * size + 8 * self.page_size
        if _free_bytes(self.path.parent) >= need:
            return True
        self._give_back_wal()
        return _free_bytes(self.path.parent) >= need

    def _give_back_wal(self) -> None:
        # TRUNCATE: copy the WAL into the database and cut the WAL file to zero bytes, so the WAL does not
        # keep (or grow back into) the space a full disk needs; journal_size_limit alone only trims it
        # after a checkpoint that a disk-full failure never reaches.
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def _lost(self, batches: int, points: int) -> None:
        self._pending["dropped_batches"] = self._pending.get("dropped_batches", 0) + batches
        self._pending["dropped_points"] = self._pending.get("dropped_points", 0) + points

    def _persist_pending(self) -> None:
        """Write pending drop counts to the meta table now; they stay pending when the disk refuses."""
        try:
            with self._tx():
                self._bump(self._pending)
        except sqlite3.OperationalError as e:
            if not _full(e):
                raise
            return
        self._pending = {}

    def _note_drops(self, points: int, why: str) -> None:
        """Log lost points at most once a minute, for as long as it goes on, with the count since the last line."""
        self._drops_unlogged += points
        if time.monotonic() - self._drop_logged_at >= 60:
            log.warning("spool %s: %s; dropped %d points since the last message (counted in the spool "
                        "measurement's dropped_points)", self.path, why, self._drops_unlogged)
            self._drop_logged_at, self._drops_unlogged = time.monotonic(), 0

    def _make_room(self, size: int) -> None:
        if self._queued_bytes + size <= self.max_bytes:
            return
        dropped_batches = dropped_points = 0
        for row_id, points, nbytes in self._db.execute("SELECT id, points, bytes FROM batches ORDER BY id").fetchall():
            if self._queued_bytes + size <= self.max_bytes:
                break
            self._db.execute("DELETE FROM batches WHERE id = ?", (row_id,))
            self._queued_bytes -= nbytes
            dropped_batches += 1
            dropped_points += points
        self._bump({"dropped_batches": dropped_batches, "dropped_points": dropped_points})
        self._db.execute("PRAGMA incremental_vacuum")
        # At most once a minute: a long outage with a full spool drops a batch every round.
        self._note_drops(dropped_points, f"full (spool_max_bytes={self.max_bytes}): dropped the oldest batches")

    # -- reading side (the shipper) -----------------------------------------------------------------------
    def peek(self, max_points: int) -> Batch | None:
        """The oldest rows of one format, coalesced up to max_points (always at least one row)."""
        with self._mutex:
            # Metadata first: after a long outage the queue holds hundreds of MB; read only what is sent.
            rows = self._db.execute("SELECT id, format, points, created FROM batches ORDER BY id LIMIT 1000").fetchall()
            if not rows:
                return None
            fmt, created = rows[0][1], rows[0][3]
            ids, total = [], 0
            for row_id, row_fmt, points, _ in rows:
                if row_fmt != fmt or (ids and total + points > max_points):
                    break
                ids.append(row_id)
                total += points
            marks = ",".join("?" * len(ids))
            parts = [row[0] for row in self._db.execute(
                f"SELECT payload FROM batches WHERE id IN ({marks}) ORDER BY id", ids)]
        return Batch(tuple(ids), fmt, total, b"\n".join(p.rstrip(b"\n") for p in parts), created)

    def ack(self, batch: Batch) -> None:
        """The store has the batch: delete its rows (a row dropped meanwhile is simply gone already)."""
        with self._mutex:
            with self._tx():
                self._delete(batch.ids)
                self._bump({"sent_points": batch.points})
                self._bump(self._pending)
                self._set("last_success_timestamp_seconds", time.time())
            self._pending = {}

    def dead_letter(self, batch: Batch, rejected: list[tuple[bytes, str]], remaining: list[bytes],
                    sent_points: int = 0) -> Batch | None:
        """Move refused lines out of the queue; what remains replaces the batch at the same place in order.

        Returns the remaining batch (to send again) or None when nothing remains.
        """
        now = time.time()
        with self._mutex, self._tx():
            self._db.executemany("INSERT INTO dead_letter (format, line, message, time) VALUES (?, ?, ?, ?)",
                                 [(batch.format, line, message, now) for line, message in rejected])
            self._db.execute("DELETE FROM dead_letter WHERE id <= (SELECT max(id) FROM dead_letter) - ?",
                             (DEAD_LETTER_KEEP,))
            self._bump({"dead_letter_points": len(rejected), "sent_points": sent_points})
            first = self._db.execute("SELECT created FROM batches WHERE id = ?", (batch.ids[0],)).fetchone()
            self._delete(batch.ids)
            if not remaining or not first:
                return None
            # Same id as the oldest row: the remainder keeps its place at the head of the queue.
            payload = b"\n".join(remaining)
            self._db.execute(
                "INSERT INTO batches (id, format, points, bytes, created, payload) VALUES (?, ?, ?, ?, ?, ?)",
                (batch.ids[0], batch.format, len(remaining), len(payload), first[0], payload))
            self._queued_bytes += len(payload)
        return Batch((batch.ids[0],), batch.format, len(remaining), payload, batch.created)

    def dead_letters(self) -> list[tuple[bytes, str, float]]:
        with self._mutex:
            return [(bytes(r[0]), r[1], r[2]) for r in
                    self._db.execute("SELECT line, message, time FROM dead_letter ORDER BY id").fetchall()]

    def stats(self) -> SpoolStats:
        with self._mutex:
            count, nbytes = self._db.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM batches").fetchone()
            meta = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
            pending = dict(self._pending)
        return SpoolStats(count, nbytes, *(int(meta.get(k, 0)) + pending.get(k, 0) for k in COUNTERS[:-1]),
                          float(meta.get(COUNTERS[-1], 0.0)))

    def close(self) -> None:
        with self._mutex:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
        os.close(self._lock_fd)

    # -- helpers ------------------------------------------------------------------------------------------
    def _tx(self):
        return _Transaction(self._db)

    def _delete(self, ids) -> None:
        for row_id in ids:
            row = self._db.execute("DELETE FROM batches WHERE id = ? RETURNING bytes", (row_id,)).fetchone()
            if row:
                self._queued_bytes -= row[0]

    def _bump(self, deltas: dict[str, float]) -> None:
        self._db.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
            [(k, v) for k, v in deltas.items() if v])

    def _set(self, key: str, value: float) -> None:
        self._db.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                         "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))


def _full(error: sqlite3.OperationalError) -> bool:
    """SQLITE_FULL, or the I/O error a write past a file size limit gives."""
    text = str(error).lower()
    return "full" in text or "disk i/o error" in text


def _free_bytes(directory: Path) -> int:
    try:
        st = os.statvfs(directory)
    except OSError:
        return 2**62  # cannot tell: let SQLite try, its error is handled
    return st.f_bavail * st.f_frsize


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
