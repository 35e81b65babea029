"""Scrape overhead of `fleetwise agent` against Debian's prometheus-node-exporter (the anchor).

Both exporters run side by side on 127.0.0.1 and are scraped alternately over HTTP the same number of
times. For each process we take the CPU time it spent during the scrape window (utime + stime from
/proc/PID/stat) and divide by scrapes x samples per scrape, and read VmRSS afterwards.

The agent also collects in the background (every --interval seconds, 10 by default); that cost is not
a scrape cost, so it is measured separately over an idle window as long as the scrape window and
subtracted. Run: `python bench/agent_overhead.py [--scrapes 200] [--json]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")
NODE_EXPORTER = "/usr/bin/prometheus-node-exporter"
# Goals from the issue: no more CPU per sample than node_exporter (~15 µs measured before), RSS <= 40 MB.
RSS_GOAL_MB = 40.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    # Fields 14 and 15 (utime, stime) counted after the ')' that ends the command name, which may hold spaces.
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def scrape(url: str) -> bytes:
    # Like Prometheus: ask for gzip, since that is what every real scrape costs the exporter.
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as r:
        body = r.read()
        if r.headers.get("Content-Encoding") == "gzip":
            import gzip

            body = gzip.decompress(body)
        return body


def count_samples(text: bytes) -> int:
    return sum(1 for line in text.splitlines() if line.strip() and not line.startswith(b"#"))


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            if count_samples(scrape(url)) > 0:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not ready after {timeout}s")


@dataclass
class Result:
    name: str
    samples: int
    scrapes: int
    scrape_cpu_s: float
    idle_cpu_s: float
    cpu_us_per_sample: float
    cpu_ms_per_scrape: float
    rss_mb: float


def measure(name: str, pid: int, scrapes: int, cpu_in_window: float, idle_cpu: float,
            samples: int) -> Result:
    net = max(cpu_in_window - idle_cpu, 0.0)
    return Result(name, samples, scrapes, round(cpu_in_window, 3), round(idle_cpu, 3),
                  round(net / (scrapes * samples) * 1e6, 2), round(net / scrapes * 1e3, 3), round(rss_mb(pid), 1))


def run(scrapes: int, interval: float, collectors: str | None) -> dict:
    if not os.access(NODE_EXPORTER, os.X_OK):
        sys.exit(f"{NODE_EXPORTER} is missing: apt-get install prometheus-node-exporter")
    ours_port, ne_port = free_port(), free_port()
    cmd = [sys.executable, "-m", "fleetwise", "agent", "--listen", f"127.0.0.1:{ours_port}",
           "--interval", str(interval)]
    if collectors:
        cmd += ["--collectors", collectors]
    procs = {
        "fleetwise agent": subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        "node_exporter": subprocess.Popen([NODE_EXPORTER, f"--web.listen-address=127.0.0.1:{ne_port}"],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
    }
    urls = {"fleetwise agent": f"http://127.0.0.1:{ours_port}/metrics",
            "node_exporter": f"http://127.0.0.1:{ne_port}/metrics"}
    try:
        for name, proc in procs.items():
            wait_ready(urls[name], proc)
        samples = {}
        for name in procs:  # warm-up: caches, first-round work, Go's and Python's lazy setup
            for _ in range(10):
                samples[name] = count_samples(scrape(urls[name]))

        before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        started = time.monotonic()
        for _ in range(scrapes):
            for name in procs:
                scrape(urls[name])
        window = time.monotonic() - started
        in_window = {n: cpu_seconds(p.pid) - before[n] for n, p in procs.items()}

        # Without scrapes: background collection (and Go's GC and runtime ticks). The window spans at
        # least three collection rounds so the rate is not luck of where a round falls; the scrape
        # window is charged that rate times its own length.
        idle_window = max(window, 3 * interval)
        before = {n: cpu_seconds(p.pid) for n, p in procs.items()}
        time.sleep(idle_window)
        background = {n: (cpu_seconds(p.pid) - before[n]) / idle_window for n, p in procs.items()}
        idle = {n: rate * window for n, rate in background.items()}

        results = [measure(n, procs[n].pid, scrapes, in_window[n], idle[n], samples[n]) for n in procs]
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    ours, anchor = results
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "command": " ".join(["python", "bench/agent_overhead.py", *sys.argv[1:]]),
        "interval_seconds": interval,
        "window_seconds": round(window, 2),
        "idle_window_seconds": round(idle_window, 2),
        "background_cpu_ms_per_second": {n: round(v * 1e3, 3) for n, v in background.items()},
        "results": [asdict(r) for r in results],
        "ratio_cpu_per_sample": round(ours.cpu_us_per_sample / anchor.cpu_us_per_sample, 3)
        if anchor.cpu_us_per_sample else None,
        "ratio_rss": round(ours.rss_mb / anchor.rss_mb, 3),
        "goal_cpu_per_sample_met": ours.cpu_us_per_sample <= anchor.cpu_us_per_sample,
        "goal_rss_met": ours.rss_mb <= RSS_GOAL_MB,
    }


def table(report: dict) -> str:
    head = f"{'exporter':<16} {'samples':>7} {'scrape CPU s':>12} {'idle CPU s':>10} {'µs/sample':>9} " \
           f"{'ms/scrape':>9} {'RSS MB':>7}"
    lines = [head, "-" * len(head)]
    for r in report["results"]:
        lines.append(f"{r['name']:<16} {r['samples']:>7} {r['scrape_cpu_s']:>12.3f} {r['idle_cpu_s']:>10.3f} "
                     f"{r['cpu_us_per_sample']:>9.2f} {r['cpu_ms_per_scrape']:>9.3f} {r['rss_mb']:>7.1f}")
    ok = {True: "met", False: "NOT met"}
    lines += [
        "",
        f"{report['results'][0]['scrapes']} scrapes each, alternating, over {report['window_seconds']} s; "
        f"agent interval {report['interval_seconds']} s; background CPU (measured over "
        f"{report['idle_window_seconds']} s without scrapes) is subtracted at its rate:",
        *(f"  {n}: {v} ms CPU per second in the background" for n, v in report["background_cpu_ms_per_second"].items()),
        f"ours / node_exporter: CPU per sample x{report['ratio_cpu_per_sample']}, RSS x{report['ratio_rss']}",
        f"goal CPU per sample <= node_exporter's: {ok[report['goal_cpu_per_sample_met']]}",
        f"goal RSS <= {RSS_GOAL_MB:.0f} MB: {ok[report['goal_rss_met']]}",
        f"{report['date']}, {report['machine']}",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scrapes", type=int, default=200, help="scrapes of each exporter (default 200)")
    parser.add_argument("--interval", type=float, default=10.0, help="the agent's collection interval")
    parser.add_argument("--collectors", help="comma-separated collectors (default: the agent's defaults)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args()
    report = run(args.scrapes, args.interval, args.collectors)
    print(json.dumps(report, indent=2) if args.json else table(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
