"""disk, filesystem, nfs and lustre collectors on the x86_64 fixture tree (kernel formats)."""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from pathlib import Path

import pytest

from agents.collectors.base import Cycle, Roots
from agents.collectors.disk import DiskCollector, DiskOptions, parse_line
from agents.collectors.filesystem import FilesystemCollector, FilesystemOptions, parse_mounts
from agents.collectors.lustre import LustreCollector, fs_name
from agents.collectors.nfs import NfsCollector
from tests.conftest import FIXTURES
from tests.helpers import collect_twice
from tests.schema_check import assert_schema

T0 = 1_700_000_000 * 10**9
LLITE = "proc/fs/lustre/llite/scratch-ffff9c2f3a8e1000/stats"
DEBUGFS_LLITE = "sys/kernel/debug/lustre/llite/home-ffff9c2f3a8e2800/stats"


@pytest.fixture
def node(tmp_path) -> Path:
    root = tmp_path / "node"
    shutil.copytree(FIXTURES / "host" / "x86_64", root, symlinks=True)
    return root


def roots(root: Path) -> Roots:
    return Roots(proc=root / "proc", sys=root / "sys")


def by_tag(points, key: str) -> dict:
    return {p.tags[key]: p.fields for p in points}


def edit(path: Path, pattern: str, replacement: str) -> None:
    text = path.read_text()
    new, n = re.subn(pattern, replacement, text, flags=re.M)
    assert n == 1, f"{pattern!r} matched {n} times in {path}"
    path.write_text(new)


# ---------------------------------------------------------------- disk

def test_disk_counters_and_default_exclusions(node):
    points = list(DiskCollector(roots(node), "n1").collect(Cycle(T0)))
    assert_schema(points)
    disks = by_tag(points, "device")
    # Partitions (sda1, nvme0n1p1), loop and zram devices are out; whole disks, device mapper and md stay.
    assert sorted(disks) == ["dm-0", "md0", "nvme0n1", "sda"]
    # sda: 9210 1200 1843200 5120 4400 900 819200 22000 2 15300 27120 | 0 0 0 0 | 120 340 (a 5.5+ line).
    assert disks["sda"] == {
        "read_bytes": 1843200 * 512, "write_bytes": 819200 * 512, "reads": 9210, "writes": 4400,
        "io_seconds": 15.3, "weighted_io_seconds": 27.12, "in_progress": 2,
        "reads_merged": 1200, "writes_merged": 900, "read_seconds": 5.12, "write_seconds": 22.0,
        "discards": 0, "discards_merged": 0, "discard_bytes": 0, "discard_seconds": 0.0,
        "flushes": 120, "flush_seconds": 0.34,
    }
    assert disks["nvme0n1"]["read_bytes"] == 23602946 * 512 == 12084708352
    # nvme0n1 discards: 1220 completed, 0 merged, 2440000 sectors in 310 ms; 15022 flushes in 24318 ms.
    assert {k: disks["nvme0n1"][k] for k in ("discards", "discards_merged", "discard_bytes", "discard_seconds",
                                             "flushes", "flush_seconds")} == {
        "discards": 1220, "discards_merged": 0, "discard_bytes": 2440000 * 512, "discard_seconds": 0.31,
        "flushes": 15022, "flush_seconds": 24.318}


def test_disk_await_from_time_and_count_deltas(node):
    stats = node / "proc" / "diskstats"
    # sda: +100 reads that took 250 ms together -> 2.5 ms a read; no write completed -> no write await.
    _, second = collect_twice(
        DiskCollector(roots(node), "n1"),
        between=lambda: edit(stats, r"^(\s+8\s+0 sda) 9210 1200 1843200 5120 ", r"\1 9310 1200 1843200 5370 "))
    sda = by_tag(second, "device")["sda"]
    assert sda["read_await_seconds"] == pytest.approx(0.0025)
    assert "write_await_seconds" not in sda
    assert sda["read_seconds"] == pytest.approx(5.37)


def test_disk_rates_busy_ratio_and_cap(node):
    stats = node / "proc" / "diskstats"

    def advance():
        # sda: +20480 sectors read (10 MiB) and +2500 ms busy in 10 s; nvme0n1: 20 s busy in 10 s (queued I/O
        # accounting runs ahead of the wall clock), which is capped at 1.
        edit(stats, r"^(\s+8\s+0 sda \d+ \d+) 1843200 (\d+ \d+ \d+) 819200 (\d+ \d+) 15300 ",
             r"\1 1863680 \2 823296 \3 17800 ")
        edit(stats, r"^(\s+259\s+0 nvme0n1 (?:\d+ ){9})390112 ", r"\g<1>410112 ")

    first, second = collect_twice(DiskCollector(roots(node), "n1"), gap_seconds=10, between=advance)
    assert_schema(first + second)
    assert "read_bytes_per_second" not in by_tag(first, "device")["sda"]
    sda = by_tag(second, "device")["sda"]
    assert sda["read_bytes_per_second"] == pytest.approx(20480 * 512 / 10)  # 1 MiB/s
    assert sda["write_bytes_per_second"] == pytest.approx(4096 * 512 / 10)
    assert sda["busy_ratio"] == pytest.approx(0.25)
    assert by_tag(second, "device")["nvme0n1"]["busy_ratio"] == 1.0
    assert by_tag(second, "device")["md0"]["busy_ratio"] == 0.0


def test_disk_counter_reset_gives_no_rate(node):
    stats = node / "proc" / "diskstats"
    _, second = collect_twice(
        DiskCollector(roots(node), "n1"),
        between=lambda: edit(stats, r"^(\s+8\s+0 sda \d+ \d+) 1843200 ", r"\1 1000 "))
    sda = by_tag(second, "device")["sda"]
    assert "read_bytes_per_second" not in sda
    assert sda["write_bytes_per_second"] == 0.0
    assert sda["read_bytes"] == 512000


def test_disk_broken_line_does_not_hide_others(node):
    stats = node / "proc" / "diskstats"
    stats.write_text(stats.read_text().replace(" 8       0 sda 9210", " 8       0 sda 9x10")
                     + "   8      16 sdb 12 7\n")
    disks = by_tag(DiskCollector(roots(node), "n1").collect(Cycle(T0)), "device")
    assert sorted(disks) == ["dm-0", "md0", "nvme0n1"]


@pytest.mark.parametrize("line", [
    "   8       0 sda 9210 1200 1843200 5120 4400 900 819200 22000 2 15300 27120",  # before 4.18: 14 fields
    "   8       0 sda 9210 1200 1843200 5120 4400 900 819200 22000 2 15300 27120 0 0 0 0",  # 4.18+: 18
    "   8       0 sda 9210 1200 1843200 5120 4400 900 819200 22000 2 15300 27120 0 0 0 0 120 340",  # 5.5+: 20
])
def test_diskstats_formats(line):
    s = parse_line(line)
    assert (s.device, s.sectors_read, s.sectors_written, s.in_progress, s.io_ms, s.weighted_io_ms) == (
        "sda", 1843200, 819200, 2, 15300, 27120)
    assert (s.reads_merged, s.read_ms, s.writes_merged, s.write_ms) == (1200, 5120, 900, 22000)
    fields = len(line.split())
    assert s.discard == ((0, 0, 0, 0) if fields >= 18 else None)
    assert s.flush == ((120, 340) if fields == 20 else None)


def test_old_kernel_line_has_no_discard_or_flush_fields(tmp_path):
    (tmp_path / "diskstats").write_text("   8       0 sda 9210 1200 1843200 5120 4400 900 819200 22000 2 15300 27120\n")
    (p,) = DiskCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0))
    assert not {"discards", "discard_bytes", "flushes", "flush_seconds"} & set(p.fields)
    assert p.fields["write_seconds"] == 22.0


def test_disk_exclude_option(node):
    collector = DiskCollector(roots(node), "n1", DiskOptions(exclude=r"^(loop|dm-|md)"))
    assert sorted(by_tag(collector.collect(Cycle(T0)), "device")) == ["nvme0n1", "nvme0n1p1", "nvme0n1p2",
                                                                      "sda", "sda1", "zram0"]
    with pytest.raises(ValueError, match="regular expression"):
        DiskOptions(exclude="(")


# ---------------------------------------------------------------- filesystem

def fake_statvfs(blocks: int, bfree: int, bavail: int, files: int, ffree: int, frsize: int = 4096):
    return os.statvfs_result((4096, frsize, blocks, bfree, bavail, files, ffree, ffree, 0, 255))


def test_filesystem_default_mounts_and_values(node):
    collector = FilesystemCollector(roots(node), "n1")
    seen = []

    def statvfs(path):
        seen.append(path)
        return fake_statvfs(blocks=1000, bfree=300, bavail=250, files=500, ffree=120)

    collector._statvfs = statvfs
    points = list(collector.collect(Cycle(T0)))
    assert_schema(points)
    tags = {p.tags["path"]: (p.tags["device"], p.tags["fstype"]) for p in points}
    # tmpfs, overlay, cgroup, proc and sysfs are left out; "\040" in the mount table is a space.
    assert tags == {
        "/": ("/dev/nvme0n1p2", "ext4"),
        "/boot/efi": ("/dev/nvme0n1p1", "vfat"),
        "/local/scratch": ("/dev/mapper/vg0-scratch", "xfs"),
        "/data disk": ("/dev/sda1", "ext4"),
        "/home": ("nfs.example.com:/export/home", "nfs4"),
        "/apps": ("10.0.0.3:/export/apps", "nfs"),
        "/lustre/scratch": ("10.0.0.10@o2ib:10.0.0.11@o2ib:/scratch", "lustre"),
    }
    assert sorted(seen) == sorted(tags)
    assert points[0].fields == {
        "size_bytes": 4096000, "free_bytes": 1228800, "avail_bytes": 1024000, "used_bytes": 2867200,
        "used_ratio": 700 / 950, "inodes_total": 500, "inodes_free": 120,
    }


def test_filesystem_fstypes_option(node):
    collector = FilesystemCollector(roots(node), "n1", FilesystemOptions(fstypes=["nfs4", "lustre"]))
    assert [m.path for m in collector.targets()] == ["/home", "/lustre/scratch"]


def test_filesystem_real_statvfs_on_configured_paths(node, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    collector = FilesystemCollector(roots(node), "n1", FilesystemOptions(mount_points=[str(data)]))
    (point,) = collector.collect(Cycle(T0))
    assert_schema([point])
    st = os.statvfs(data)
    # A path that is not a mount point carries the tags of the mount that holds it (here the fixture's /).
    assert point.tags == {"host": "n1", "path": str(data), "device": "/dev/nvme0n1p2", "fstype": "ext4"}
    assert point.fields["size_bytes"] == st.f_blocks * st.f_frsize > 0
    assert point.fields["inodes_total"] == st.f_files
    assert 0.0 <= point.fields["used_ratio"] <= 1.0


def test_filesystem_error_on_one_mount_skips_only_it(node, tmp_path):
    good = tmp_path / "good"
    good.mkdir()
    collector = FilesystemCollector(roots(node), "n1",
                                    FilesystemOptions(mount_points=[str(tmp_path / "gone"), str(good)]))
    assert [p.tags["path"] for p in collector.collect(Cycle(T0))] == [str(good)]


def test_filesystem_hung_statvfs_times_out_and_is_not_retried_while_stuck(node):
    release = threading.Event()
    calls: list[str] = []

    def statvfs(path):
        calls.append(path)
        if path == "/home":  # a hard NFS mount whose server is gone
            release.wait(30)
        return fake_statvfs(blocks=10, bfree=5, bavail=5, files=10, ffree=5)

    collector = FilesystemCollector(roots(node), "n1", FilesystemOptions(timeout_seconds=0.2))
    collector._statvfs = statvfs
    try:
        started = time.monotonic()
        paths = [p.tags["path"] for p in collector.collect(Cycle(T0))]
        assert time.monotonic() - started < 3
        assert "/home" not in paths and "/apps" in paths and "/" in paths
        assert calls.count("/home") == 1

        paths = [p.tags["path"] for p in collector.collect(Cycle(T0 + 10**10))]
        assert "/home" not in paths
        assert calls.count("/home") == 1  # the stuck thread is remembered, no second one piles up
        assert len([t for t in threading.enumerate() if t.name == "statvfs /home"]) == 1
    finally:
        release.set()
    collector._stuck["/home"].join(5)
    paths = [p.tags["path"] for p in collector.collect(Cycle(T0 + 2 * 10**10))]
    assert "/home" in paths and calls.count("/home") == 2


def test_mount_table_escapes_and_overmounts():
    mounts = parse_mounts("/dev/sda1 /mnt/a\\040b ext4 rw 0 0\n/dev/sdb1 /data xfs rw 0 0\n"
                          "/dev/sdc1 /data ext4 rw 0 0\n")
    assert [(m.device, m.path, m.fstype) for m in mounts] == [("/dev/sda1", "/mnt/a b", "ext4"),
                                                              ("/dev/sdc1", "/data", "ext4")]


# ---------------------------------------------------------------- nfs

def test_nfs_mounts_from_mountstats(node):
    points = list(NfsCollector(roots(node), "n1").collect(Cycle(T0)))
    assert_schema(points)
    assert [(p.tags["path"], p.tags["server"], p.tags["version"]) for p in points] == [
        ("/home", "nfs.example.com", "4.2"), ("/apps", "10.0.0.3", "3")]
    home, apps = (p.fields for p in points)
    assert home == {
        "read_bytes": 1207959552 + 4194304,  # normal + direct
        "write_bytes": 524288000 + 1048576,
        "read_ops": 1152,
        "write_ops": 500,
        "ops": 1 + 1152 + 500 + 20 + 300 + 298 + 410 + 2000 + 640 + 60 + 2 + 1 + 1 + 3,
        "rtt_seconds": pytest.approx((2400 + 1500 + 40 + 330 + 120 + 160 + 800 + 310 + 12 + 1 + 1 + 1 + 1) / 1000),
    }
    assert apps == {"read_bytes": 3145728000, "write_bytes": 0, "read_ops": 3000, "write_ops": 0,
                    "ops": 5000 + 1200 + 800 + 3000 + 2 + 1,
                    "rtt_seconds": pytest.approx((900 + 400 + 150 + 6000 + 1) / 1000)}


def test_nfs_rates_and_reset(node):
    stats = node / "proc" / "self" / "mountstats"

    def advance():
        # /home: 50 MiB more normal reads in 10 s; /apps: remounted, its counters restart from small values.
        edit(stats, r"bytes:\t1207959552 ", "bytes:\t1260388352 ")
        edit(stats, r"bytes:\t3145728000 0 0 0 3145728000", "bytes:\t4096 0 0 0 4096")

    first, second = collect_twice(NfsCollector(roots(node), "n1"), gap_seconds=10, between=advance)
    assert_schema(first + second)
    home, apps = (p.fields for p in second)
    assert home["read_bytes_per_second"] == pytest.approx(52428800 / 10)
    assert home["write_bytes_per_second"] == 0.0
    assert "read_bytes_per_second" not in apps and apps["read_bytes"] == 4096


V3_HOME = """\
device nfs.example.com:/export/home mounted on /home with fstype nfs statvers=1.1
\topts:\trw,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys
\tage:\t3600
\tcaps:\tcaps=0x3fc7,wtmult=512,dtsize=1048576,bsize=0,namlen=255
\tsec:\tflavor=1,pseudoflavor=1
\tevents:\t10 20 0 0 5 3 30 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
\tbytes:\t{read} 2000 0 0 {read} 2000 250 1
\tRPC iostats version: 1.1  p/v: 100003/3 (nfs)
\txprt:\ttcp 0 0 1 0 3 60 60 0 70 0 2 0 0
\tper-op statistics
\t        NULL: 1 1 0 44 24 0 0 0 0
\t     GETATTR: 30 30 0 3600 3360 0 12 13 0
\t        READ: 250 250 0 31000 {read_rpc} 2 500 510 0
\t       WRITE: 1 1 0 2148 136 0 3 3 0
"""


def test_nfs_v3_and_v4_mounts_of_one_path_are_two_series_with_their_own_rates(node):
    stats = node / "proc" / "self" / "mountstats"
    stats.write_text(stats.read_text() + V3_HOME.format(read=1_000_000, read_rpc=1_032_000))

    def advance():
        # v4: +50 MiB in 10 s; v3: +1 MB in 10 s. Were the rate state shared, one would be the other's base.
        edit(stats, r"bytes:\t1207959552 ", "bytes:\t1260388352 ")
        edit(stats, r"bytes:\t1000000 2000", "bytes:\t2000000 2000")

    first, second = collect_twice(NfsCollector(roots(node), "n1"), gap_seconds=10, between=advance)
    assert_schema(first + second)
    home = {p.tags["version"]: p.fields for p in second if p.tags["path"] == "/home"}
    assert sorted(home) == ["3", "4.2"]
    assert home["4.2"]["read_bytes_per_second"] == pytest.approx(52428800 / 10)
    assert home["3"]["read_bytes_per_second"] == pytest.approx(100_000.0)
    assert home["3"]["read_bytes"] == 2_000_000 and home["3"]["read_ops"] == 250 and home["3"]["ops"] == 282
    assert home["3"]["rtt_seconds"] == pytest.approx((0 + 12 + 500 + 3) / 1000)


def test_nfs_version_from_fstype_when_the_kernel_does_not_say(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountstats").write_text(
        "device srv:/a mounted on /a with fstype nfs4 statvers=1.0\n\tbytes:\t1 2 3 4 5 6 7 8\n"
        "device srv:/b mounted on /b with fstype nfs statvers=1.0\n\tbytes:\t1 2 3 4 5 6 7 8\n")
    points = list(NfsCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0)))
    assert [(p.tags["path"], p.tags["version"]) for p in points] == [("/a", "4"), ("/b", "3")]
    assert points[0].fields["read_bytes"] == 1 + 3


def test_nfs_broken_mount_does_not_hide_the_other(node):
    stats = node / "proc" / "self" / "mountstats"
    edit(stats, r"^(\s+READ:) 1152 ", r"\1 11x52 ")
    points = list(NfsCollector(roots(node), "n1").collect(Cycle(T0)))
    assert [p.tags["path"] for p in points] == ["/apps"]


def test_nfs_without_mountstats_yields_nothing(tmp_path):
    assert list(NfsCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0))) == []


def test_nfs_without_nfs_mounts_yields_nothing(tmp_path):
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountstats").write_text(
        "device /dev/sda1 mounted on / with fstype ext4\ndevice proc mounted on /proc with fstype proc\n")
    assert list(NfsCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0))) == []


# ---------------------------------------------------------------- lustre

def test_lustre_procfs_and_debugfs_instances(node):
    points = list(LustreCollector(roots(node), "n1").collect(Cycle(T0)))
    assert_schema(points)
    fs = by_tag(points, "fs")
    assert fs == {
        "scratch": {"read_bytes": 5368709120, "write_bytes": 1073741824, "open": 1520, "close": 1518,
                    "getattr": 9210, "setattr": 31},
        # No write yet: llite does not print counters with no samples.
        "home": {"read_bytes": 44040192, "write_bytes": 0, "open": 12, "close": 12, "getattr": 57, "setattr": 0},
    }


def test_lustre_rates_and_reset(node):
    def advance():
        # scratch: 1 GiB more read in 10 s; home's client was remounted and starts over.
        edit(node / LLITE, r"^read_bytes .*$", "read_bytes                4352 samples [bytes] 4096 4194304 6442450944")
        edit(node / DEBUGFS_LLITE, r"^read_bytes .*$", "read_bytes                1 samples [bytes] 4096 4096 4096")

    first, second = collect_twice(LustreCollector(roots(node), "n1"), gap_seconds=10, between=advance)
    assert_schema(first + second)
    fs = by_tag(second, "fs")
    assert fs["scratch"]["read_bytes_per_second"] == pytest.approx(1073741824 / 10)
    assert fs["scratch"]["write_bytes_per_second"] == 0.0
    assert "read_bytes_per_second" not in fs["home"]
    assert fs["home"]["write_bytes_per_second"] == 0.0


def test_lustre_broken_instance_does_not_hide_the_other(node):
    edit(node / LLITE, r"^read_bytes .*$", "read_bytes                4096 samples [bytes] 4096 4194304 lots")
    assert sorted(by_tag(LustreCollector(roots(node), "n1").collect(Cycle(T0)), "fs")) == ["home"]


def test_lustre_absent_yields_nothing(tmp_path):
    assert list(LustreCollector(Roots(proc=tmp_path, sys=tmp_path), "n1").collect(Cycle(T0))) == []


def test_lustre_sum_of_squares_column_is_not_taken_for_the_sum(tmp_path):
    stats = tmp_path / "fs/lustre/llite/work-ffff88810a2b3c00/stats"
    stats.parent.mkdir(parents=True)
    stats.write_text("snapshot_time 1700000000.1 secs.usecs\n"
                     "write_bytes 2 samples [bytes] 4096 8192 12288 83886080\n")
    (point,) = LustreCollector(Roots(proc=tmp_path, sys=tmp_path / "sys"), "n1").collect(Cycle(T0))
    assert point.tags["fs"] == "work" and point.fields["write_bytes"] == 12288


@pytest.mark.parametrize(("instance", "fs"), [
    ("scratch-ffff8881234", "scratch"),
    ("lustre-ffff9c2f3a8e1000", "lustre"),
    ("proj-a-ffff88810a2b3c00", "proj-a"),
    ("nocookie", "nocookie"),
])
def test_lustre_fs_name(instance, fs):
    assert fs_name(instance) == fs
