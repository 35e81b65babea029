"""A real Prometheus holding chosen samples at chosen times: OpenMetrics text backfilled with
`promtool tsdb create-blocks-from openmetrics`, then served by Debian's prometheus with no scrape targets.
Also the dcgm-exporter exposition the end-to-end tests serve, in the exporter's own format."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterable, Iterator
from pathlib import Path

from tests.conftest import require_binary
from tests.services import prometheus

# dcgm-exporter's HELP texts and types (default-counters.csv), and the unit each is in
DCGM_FAMILIES = {
    "DCGM_FI_DEV_GPU_UTIL": ("gauge", "GPU utilization (in %)."),
    "DCGM_FI_DEV_MEM_COPY_UTIL": ("gauge", "Memory utilization (in %)."),
    "DCGM_FI_DEV_FB_FREE": ("gauge", "Framebuffer memory free (in MiB)."),
    "DCGM_FI_DEV_FB_USED": ("gauge", "Framebuffer memory used (in MiB)."),
    "DCGM_FI_DEV_POWER_USAGE": ("gauge", "Power draw (in W)."),
    "DCGM_FI_DEV_POWER_MGMT_LIMIT": ("gauge", "Power management limit (in W)."),
    "DCGM_FI_DEV_SM_CLOCK": ("gauge", "SM clock frequency (in MHz)."),
    "DCGM_FI_DEV_GPU_TEMP": ("gauge", "GPU temperature (in C)."),
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": ("counter", "Total energy consumption since boot (in mJ)."),
}


def labels_text(labels: dict[str, str]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in labels.items()) + "}"


def openmetrics(families: dict[str, list[tuple[dict[str, str], list[tuple[int, float]]]]],
                types: dict[str, str] | None = None) -> Iterator[str]:
    """OpenMetrics lines: per metric, its series as (labels, [(time ms, value)]); one family at a time,
    each series' samples in time order, as promtool requires."""
    for name, series in families.items():
        kind = (types or {}).get(name) or DCGM_FAMILIES.get(name, ("gauge", ""))[0]
        yield f"# TYPE {name} {kind}"
        for labels, samples in series:
            lab = labels_text(labels)
            for t_ms, v in samples:
                yield f"{name}{lab} {v!r} {t_ms // 1000}.{t_ms % 1000:03d}"
    yield "# EOF"


def backfill(lines: Iterable[str], workdir: Path) -> Path:
    """Write lines to a file and turn them into TSDB blocks under workdir/tsdb. promtool reads the whole
    file once per 2-hour block, so large backfills go through backfill_windows instead."""
    return backfill_windows([lines], workdir)


def backfill_windows(windows: Iterable[Iterable[str]], workdir: Path) -> Path:
    """Each window's OpenMetrics lines (ending with # EOF) backfilled on its own into workdir/tsdb: with one
    window per 2-hour block, promtool reads each sample once instead of once per block."""
    promtool = require_binary("promtool")
    tsdb = workdir / "tsdb"
    tsdb.mkdir(exist_ok=True)
    src = workdir / "backfill.om"
    for lines in windows:
        with open(src, "w", encoding="utf-8") as fh:
            for line in lines:
                fh.write(line + "\n")
        proc = subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(src),
                               str(tsdb)], capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            raise AssertionError(f"promtool backfill failed: {proc.stderr[-2000:]}")
        src.unlink()
    return tsdb


def prometheus_on(tsdb: Path, workdir: Path):
    """Prometheus serving an existing TSDB (no scrape targets; retention long enough for any backfill)."""
    return prometheus(workdir, [], "10s", tsdb=tsdb, retention="100y")


def prom_query(base: str, promql: str, at: float | None = None) -> list[dict]:
    params = {"query": promql, **({"time": f"{at:.3f}"} if at is not None else {})}
    with urllib.request.urlopen(f"{base}/api/v1/query?" + urllib.parse.urlencode(params), timeout=30) as r:
        body = json.load(r)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_until(predicate, timeout: float, what: str, poll: float = 0.5):
    """Poll predicate until it returns something truthy; fail naming what was awaited."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(poll)
