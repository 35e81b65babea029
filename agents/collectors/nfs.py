"""nfs: NFS client statistics per mount from /proc/self/mountstats (statvers 1.0 and 1.1)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from agents.collectors.base import Collector, Cycle, read_text
from agents.collectors.filesystem import unescape_octal
from agents.points import FieldValue, Point
from agents.schema.storage import NFS

NFS_FSTYPES = ("nfs", "nfs4")
_DEVICE = re.compile(r"^device (?P<device>\S+) mounted on (?P<path>\S+) with fstype (?P<fstype>\S+)")


@dataclass
class NfsMount:
    device: str
    path: str
    fstype: str
    bytes: list[int] = field(default_factory=list)  # normal r/w, direct r/w, server r/w, pages r/w
    ops: dict[str, list[int]] = field(default_factory=dict)  # op -> ops trans timeouts sent recv queue rtt exec
    error: str = ""
    vers: str = ""  # vers= of the opts line

    @property
    def version(self) -> str:
        """The protocol version, never empty: the tag must be on every point (InfluxDB 3 fixes a
        measurement's tag keys). Kernels print vers=3, vers=4.2; old ones only the fstype."""
        if self.vers:
            return self.vers
        return "4" if self.fstype == "nfs4" else "3"

    @property
    def server(self) -> str:
        # "host:/export", "[fd00::1]:/export" (IPv6 in brackets has colons of its own)
        if self.device.startswith("["):
            return self.device[1:self.device.find("]")] if "]" in self.device else self.device
        return self.device.partition(":")[0]


def parse_mountstats(text: str) -> list[NfsMount]:
    """NFS mounts of a mountstats file; other file systems' 'device' lines are skipped."""
    mounts: list[NfsMount] = []
    current: NfsMount | None = None
    in_ops = False
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        if words[0] == "device":
            current, in_ops = None, False
            # Paths come octal-escaped (\040 for a space), so a line splits cleanly on whitespace.
            match = _DEVICE.match(line)
            if match and match["fstype"] in NFS_FSTYPES:
                current = NfsMount(match["device"], unescape_octal(match["path"]), match["fstype"])
                mounts.append(current)
            continue
        if current is None:
            continue
        try:
            if words[0] == "opts:" and len(words) > 1:
                for option in words[1].split(","):
                    key, _, value = option.partition("=")
                    if key in ("vers", "nfsvers") and value:
                        current.vers = value
            elif words[0] == "bytes:":
                current.bytes = [int(w) for w in words[1:]]
            elif line.strip() == "per-op statistics":
                in_ops = True
            elif in_ops and words[0].endswith(":") and len(words) >= 9:
                current.ops[words[0][:-1]] = [int(w) for w in words[1:]]
        except ValueError:
            # Remember the damage and keep reading: the other mounts' sections are still good.
            current.error = f"unreadable line {line.strip()!r}"
    return mounts


def mount_fields(m: NfsMount) -> dict[str, FieldValue]:
    if m.error:
        raise ValueError(f"{m.path}: {m.error}")
    if len(m.bytes) < 4:
        raise ValueError(f"{m.path}: no complete 'bytes:' line")
    return {
        "read_bytes": m.bytes[0] + m.bytes[2],
        "write_bytes": m.bytes[1] + m.bytes[3],
        "read_ops": m.ops.get("READ", [0])[0],
        "write_ops": m.ops.get("WRITE", [0])[0],
        "ops": sum(v[0] for v in m.ops.values()),
        "rtt_seconds": sum(v[6] for v in m.ops.values()) / 1000.0,
    }


class NfsCollector(Collector):
    name = "nfs"
    measurements = (NFS,)

    def collect(self, cycle: Cycle) -> Iterator[Point]:
        path = self.proc("self", "mountstats")
        try:
            text = read_text(path)
        except OSError as e:
            self.log_once(f"absent:{path}", logging.DEBUG, "no NFS statistics: %s", e)
            return
        for m in parse_mountstats(text):
            try:
                fields = mount_fields(m)
            except ValueError as e:
                self.log_once(f"bad:{m.path}", logging.WARNING, "skipping NFS mount: %s", e)
                continue
            tags = {"path": m.path, "server": m.server, "version": m.version}
            key = tuple(tags.values())
            self.add_rate(fields, "read_bytes_per_second", (*key, "read"), fields["read_bytes"], cycle)
            self.add_rate(fields, "write_bytes_per_second", (*key, "write"), fields["write_bytes"], cycle)
            yield self.point(NFS, tags, fields, cycle)

