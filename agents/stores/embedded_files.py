"""File-system rules of the embedded store, shared by the agent's light sink, the Parquet writer and readers.

Standard library only: the agent process imports this and must stay light.

- Modes: directories 0750, files 0640, whatever the umask (telemetry names jobs, users and hosts).
- Publication: write under a "."-name in the same directory, fsync, rename, fsync the directory.
- One writer at a time: an exclusive flock on ROOT/.lock around every change of the Parquet files
  (write, fold, compaction, retention), so two processes writing one store interleave safely.
- Quarantine: a file that cannot be read is renamed to ".bad-<name>" (readers skip "." names).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("fleetwise.store")

DIR_MODE = 0o750
FILE_MODE = 0o640
LOCK_NAME = ".lock"
BAD_PREFIX = ".bad-"


class StoreBusy(RuntimeError):
    """Another process holds the store's writer lock and the caller asked not to wait."""


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: Path, root: Path) -> bool:
    """Create path (inside root, which must exist) level by level with DIR_MODE. True when something was made."""
    made = False
    missing = []
    p = path
    while p != root and not p.is_dir():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
            made = True
        except FileExistsError:
            continue
        fsync_dir(d.parent)
    return made


def make_root(root: Path) -> None:
    # The umask can only take bits away from DIR_MODE and FILE_MODE, never add them.
    root.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)


def open_new(path: Path):
    """A new file opened for writing with FILE_MODE (a stale temp file of the same name is replaced)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    return os.fdopen(fd, "wb")


def publish_bytes(final: Path, data: bytes) -> None:
    """Write data to final atomically (temp name, fsync, rename, fsync dir); nothing is left behind on error."""
    tmp = final.with_name(f".tmp-{final.name}")
    try:
        with open_new(tmp) as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(final.parent)


def quarantine(path: Path, problem: object) -> Path | None:
    """Set an unreadable file aside under a hidden name, and say so once (the rename makes it once)."""
    target = path.with_name(BAD_PREFIX + path.name)
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None  # someone else moved or deleted it
    log.warning("embedded store: set aside unreadable file %s as %s: %s", path, target.name, problem)
    return target


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    except OSError:
        return ""
    return f" (pid {text})" if text.isdigit() else ""


@contextlib.contextmanager
def writer_lock(root: Path, wait: bool = True) -> Iterator[None]:
    """Hold ROOT/.lock exclusively. wait=False raises StoreBusy, naming the store and the holder's PID."""
    path = root / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = _holder(fd)
            if not wait:
                raise StoreBusy(f"embedded store {root} is busy: another writer{holder} holds {path}") from None
            log.info("embedded store %s: waiting for another writer%s to finish", root, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the lock
