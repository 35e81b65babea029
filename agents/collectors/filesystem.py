"""filesystem: size and free space of mount points (statvfs), never hanging on a dead NFS server.

statvfs on a hard NFS mount whose server is gone blocks in the kernel, uninterruptibly. So each call
runs in a daemon thread with a timeout; a mount that timed out is remembered with its thread and not
asked again until that thread has returned, so a dead server costs one stuck thread, not one per cycle.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from agents.collectors.base import Collector, Cycle, read_text
from agents.points import FieldValue, Point
from agents.schema.storage import FILESYSTEM

# File systems that hold data; pseudo (proc, sysfs, cgroup), memory (tmpfs) and layered (overlay,
# squashfs images) ones are left out. ceph is the kernel cephfs client's fstype.
DEFAULT_FSTYPES = (
    "ext2", "ext3", "ext4", "xfs", "btrfs", "zfs", "f2fs", "vfat", "jfs", "reiserfs",
    "nfs", "nfs4", "cifs", "smb3", "lustre", "gpfs", "beegfs", "ceph", "fuse.ceph-fuse", "glusterfs",
    "fuse.glusterfs", "ocfs2", "gfs2", "wekafs",
)


class FilesystemOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mount_points: list[str] | None = Field(
        None, description="Paths to report; default: every mount whose fstype is in fstypes.")
    fstypes: list[str] = Field(list(DEFAULT_FSTYPES), description="File system types reported by default.")
    timeout_seconds: float = Field(5.0, gt=0, le=60, description="Give up on a statvfs (dead NFS server) after this.")


@dataclass(frozen=True)
class Mount:
    device: str
    path: str
    fstype: str


def unescape_octal(text: str) -> str:
    """The kernel writes spaces, tabs, newlines and backslashes in paths as octal escapes (\\040)."""
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        chunk = text[i + 1:i + 4]
        if text[i] == "\\" and len(chunk) == 3 and all(c in "01234567" for c in chunk):
            out.append(chr(int(chunk, 8)))
            i += 4
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def parse_mounts(text: str) -> list[Mount]:
    """/proc/self/mounts; a path mounted over keeps only its last (visible) mount."""
    by_path: dict[str, Mount] = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) < 3:
            continue
        path = unescape_octal(words[1])
        by_path.pop(path, None)
        by_path[path] = Mount(unescape_octal(words[0]), path, words[2])
    return list(by_path.values())


def _containing(mounts: list[Mount], path: str) -> Mount | None:
    best = None
    for m in mounts:
        prefix = m.path.rstrip("/") + "/"
        if (path == m.path or path.startswith(prefix)) and (best is None or len(m.path) > len(best.path)):
            best = m
    return best


def statvfs_fields(st: os.statvfs_result) -> dict[str, FieldValue]:
    size = st.f_blocks * st.f_frsize
    free = st.f_bfree * st.f_frsize
    avail = st.f_bavail * st.f_frsize
    used = size - free
    return {
        "size_bytes": size,
        "free_bytes": free,
        "avail_bytes": avail,
        "used_bytes": used,
        # df's Use%: the root reserve counts neither as used nor as available.
        "used_ratio": used / (used + avail) if used + avail > 0 else 0.0,
        "inodes_total": st.f_files,
        "inodes_free": st.f_ffree,
    }


class FilesystemCollector(Collector):
    name = "filesystem"
    measurements = (FILESYSTEM,)
    Options = FilesystemOptions

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self._statvfs: Callable[[str], os.statvfs_result] = os.statvfs  # the hardware boundary, for tests
        self._stuck: dict[str, threading.Thread] = {}

    def _mounts(self) -> list[Mount]:
        for path in (self.proc("self", "mounts"), self.proc("mounts")):
            try:
                return parse_mounts(read_text(path))
            except OSError:
                continue
        return []

    def targets(self) -> list[Mount]:
        mounts = self._mounts()
        if self.options.mount_points is None:
            allowed = set(self.options.fstypes)
            return [m for m in mounts if m.fstype in allowed]
        out = []
        for path in self.options.mount_points:
            m = _containing(mounts, path)
            out.append(Mount(m.device if m else "unknown", path, m.fstype if m else "unknown"))
        return out

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        for mount in self.targets():
            st = self._statvfs_with_timeout(mount.path)
            if st is None:
                continue
            yield self.point(FILESYSTEM, {"path": mount.path, "device": mount.device, "fstype": mount.fstype},
                             statvfs_fields(st), cycle)

    def _statvfs_with_timeout(self, path: str) -> os.statvfs_result | None:
        stuck = self._stuck.get(path)
        if stuck is not None:
            if stuck.is_alive():
                return None
            del self._stuck[path]
            self.log_once(f"back:{path}", logging.INFO, "statvfs(%s) answers again", path)
            self._logged.discard(f"stuck:{path}")
        result: list[os.statvfs_result | Exception] = []

        def call() -> None:
            try:
                result.append(self._statvfs(path))
            except Exception as e:
                result.append(e)

        thread = threading.Thread(target=call, name=f"statvfs {path}", daemon=True)
        thread.start()
        thread.join(self.options.timeout_seconds)
        if thread.is_alive():
            self._stuck[path] = thread
            self._logged.discard(f"back:{path}")
            self.log_once(f"stuck:{path}", logging.WARNING,
                           "statvfs(%s) did not answer in %ss (dead NFS server?); skipping it until it does",
                           path, self.options.timeout_seconds)
            return None
        outcome = result[0]
        if isinstance(outcome, Exception):
            self.log_once(f"error:{path}:{outcome}", logging.WARNING, "skipping %s: %s", path, outcome)
            return None
        return outcome

