"""Helpers for tests: free ports, waiting for a server, running the CLI in a subprocess."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence

from agents.collectors.base import Collector, Cycle


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_ports(n: int) -> list[int]:
    """n distinct free ports: all held open while they are picked, since free_port() twice in a row can
    return the same port (it did: influxd's HTTP and RPC addresses collided and it exited)."""
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def wait_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None,
              header: str | None = None) -> None:
    """Wait for a 2xx from url (and, with `header`, that header in the answer, so a stray server that
    happens to hold the port is not taken for the one we started)."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if header is None or r.headers.get(header):
                    return
        except Exception as e:
            last = e
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer within {timeout}s: {last}")


def run_cli(args: Sequence[str], **kw) -> subprocess.CompletedProcess:
    kw.setdefault("timeout", 120)
    return subprocess.run([sys.executable, "-m", "fleetwise", *args], capture_output=True, text=True, **kw)


def collect_twice(collector: Collector, gap_seconds: float = 10.0, t0_ns: int = 1_700_000_000 * 10**9,
                  between=None):
    """Two collection rounds at simulated times gap_seconds apart; `between()` can rewrite the
    fixture tree in between (to advance counters). Returns (first_points, second_points)."""
    first = list(collector.collect(Cycle(time_ns=t0_ns)))
    collector.rates.sweep()
    if between is not None:
        between()
    second = list(collector.collect(Cycle(time_ns=t0_ns + int(gap_seconds * 1e9))))
    collector.rates.sweep()
    return first, second
