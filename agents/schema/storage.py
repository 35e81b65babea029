"""Block devices, file systems, NFS and Lustre client measurements."""

from agents.schema.types import counter, gauge, measurement, rate

DISK = measurement(
    "disk",
    "Per block device, from /proc/diskstats (sectors are 512 bytes whatever the device's sector size).",
    ("device",),
    counter("read_bytes", "Bytes read.", type=int, telegraf="diskio.read_bytes",
            node_exporter="node_disk_read_bytes_total"),
    counter("write_bytes", "Bytes written.", type=int, telegraf="diskio.write_bytes",
            node_exporter="node_disk_written_bytes_total"),
    counter("reads", "Reads completed.", type=int, telegraf="diskio.reads",
            node_exporter="node_disk_reads_completed_total"),
    counter("writes", "Writes completed.", type=int, telegraf="diskio.writes",
            node_exporter="node_disk_writes_completed_total"),
    counter("io_seconds", "Time the device had I/O in flight.", telegraf="diskio.io_time (ms)",
            node_exporter="node_disk_io_time_seconds_total"),
    counter("weighted_io_seconds", "I/O time weighted by requests in flight.",
            telegraf="diskio.weighted_io_time (ms)", node_exporter="node_disk_io_time_weighted_seconds_total"),
    gauge("in_progress", "I/Os in flight now.", type=int, telegraf="diskio.iops_in_progress",
          node_exporter="node_disk_io_now"),
    rate("read_bytes_per_second", "Read rate over the interval."),
    rate("write_bytes_per_second", "Write rate over the interval."),
    rate("busy_ratio", "Fraction of the interval with I/O in flight (iostat %util / 100).", prometheus=True),
)

FILESYSTEM = measurement(
    "filesystem",
    "Size and free space of configured mount points (statvfs).",
    ("path", "device", "fstype"),
    gauge("size_bytes", "Total size.", type=int, telegraf="disk.total", node_exporter="node_filesystem_size_bytes"),
    gauge("free_bytes", "Free space, root's reserve included.", type=int, telegraf="disk.free",
          node_exporter="node_filesystem_free_bytes"),
    gauge("avail_bytes", "Space available to unprivileged users.", type=int,
          node_exporter="node_filesystem_avail_bytes"),
    gauge("used_bytes", "size - free.", type=int, telegraf="disk.used"),
    gauge("used_ratio", "used / (used + avail), as df shows it.", telegraf="disk.used_percent / 100"),
    gauge("inodes_total", "Inodes.", type=int, telegraf="disk.inodes_total", node_exporter="node_filesystem_files"),
    gauge("inodes_free", "Free inodes.", type=int, telegraf="disk.inodes_free",
          node_exporter="node_filesystem_files_free"),
)

NFS = measurement(
    "nfs",
    "NFS client statistics per mount, from /proc/self/mountstats.",
    ("path", "server"),
    counter("read_bytes", "Bytes read by applications (normal + direct).", type=int,
            telegraf="nfsclient.bytes_read", node_exporter="node_mountstats_nfs_read_bytes_total"),
    counter("write_bytes", "Bytes written by applications (normal + direct).", type=int,
            telegraf="nfsclient.bytes_write", node_exporter="node_mountstats_nfs_write_bytes_total"),
    counter("read_ops", "READ RPCs sent.", type=int, telegraf="nfsclient.read_ops",
            node_exporter='node_mountstats_nfs_operations_requests_total{operation="READ"}'),
    counter("write_ops", "WRITE RPCs sent.", type=int, telegraf="nfsclient.write_ops",
            node_exporter='node_mountstats_nfs_operations_requests_total{operation="WRITE"}'),
    counter("ops", "All RPCs sent.", type=int,
            node_exporter="sum(node_mountstats_nfs_operations_requests_total)"),
    counter("rtt_seconds", "Sum of RPC round-trip times over all operations.", type=float,
            node_exporter="node_mountstats_nfs_operations_request_time_seconds_total"),
    rate("read_bytes_per_second", "Read rate over the interval."),
    rate("write_bytes_per_second", "Write rate over the interval."),
)

LUSTRE = measurement(
    "lustre",
    "Lustre client (llite) statistics per file system instance.",
    ("fs",),
    counter("read_bytes", "Bytes read.", type=int, telegraf="lustre2.read_bytes",
            node_exporter="node_lustre_read_bytes_total (lustre_exporter)"),
    counter("write_bytes", "Bytes written.", type=int, telegraf="lustre2.write_bytes",
            node_exporter="node_lustre_write_bytes_total (lustre_exporter)"),
    counter("open", "Opens.", type=int, telegraf="lustre2.open"),
    counter("close", "Closes.", type=int, telegraf="lustre2.close"),
    counter("getattr", "getattr calls.", type=int, telegraf="lustre2.getattr"),
    counter("setattr", "setattr calls.", type=int, telegraf="lustre2.setattr"),
    rate("read_bytes_per_second", "Read rate over the interval."),
    rate("write_bytes_per_second", "Write rate over the interval."),
)

MEASUREMENTS = (DISK, FILESYSTEM, NFS, LUSTRE)
