"""Real servers for tests: influxd and Prometheus from Debian's packages, started on 127.0.0.1 with
free ports and temp dirs, and stopped afterwards."""

from __future__ import annotations

import contextlib
import subprocess
import textwrap
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_binary
from tests.helpers import free_port, free_ports, wait_http


@dataclass
class Server:
    url: str
    proc: subprocess.Popen
    workdir: Path
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def start_again(self) -> None:
        """Restart with the same arguments and data (outage tests)."""
        self.stop()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.proc.args, stdout=log, stderr=subprocess.STDOUT)


def _spawn(args: Sequence[str], log: Path) -> subprocess.Popen:
    # The child keeps its own copy of the descriptor; ours can close at once.
    with open(log, "wb") as out:
        return subprocess.Popen(list(args), stdout=out, stderr=subprocess.STDOUT)


@contextlib.contextmanager
def _running(server: Server, ready: str, timeout: float = 120, header: str | None = None) -> Iterator[Server]:
    """The server once `ready` answers (stopped on the way out, ready or not)."""
    try:
        wait_http(server.url + ready, timeout=timeout, proc=server.proc, header=header)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def influxd(workdir: Path, auth: bool = False) -> Iterator[Server]:
    """InfluxDB 1.x with every bind-address on 127.0.0.1, data in workdir, reporting disabled
    (auth=True: HTTP authentication on; the first CREATE USER ... WITH ALL PRIVILEGES needs none)."""
    binary = require_binary("influxd")
    http_port, rpc_port = free_ports(2)
    conf = workdir / "influxdb.conf"
    conf.write_text(textwrap.dedent(f"""
        reporting-disabled = true
        bind-address = "127.0.0.1:{rpc_port}"
        [meta]
          dir = "{workdir}/meta"
        [data]
          dir = "{workdir}/data"
          wal-dir = "{workdir}/wal"
          query-log-enabled = false
        [http]
          enabled = true
          bind-address = "127.0.0.1:{http_port}"
          log-enabled = false
          auth-enabled = {"true" if auth else "false"}
        [monitor]
          store-enabled = false
        [continuous_queries]
          enabled = false
    """))
    log = workdir / "influxd.log"
    server = Server(f"http://127.0.0.1:{http_port}", _spawn([binary, "-config", str(conf)], log), workdir, log)
    with _running(server, "/ping", timeout=60, header="X-Influxdb-Version") as running:
        yield running


@contextlib.contextmanager
def prometheus(workdir: Path, targets: Sequence[str], scrape_interval: str = "1s", tsdb: Path | None = None,
               retention: str | None = None, rule_files: Sequence[Path] = ()) -> Iterator[Server]:
    """Prometheus scraping `targets` (HOST:PORT) every scrape_interval, storage in workdir (or in tsdb, an
    existing one, e.g. backfilled; retention long enough to keep old blocks), evaluating rule_files every
    scrape_interval."""
    binary = require_binary("prometheus")
    port = free_port()
    conf = workdir / "prometheus.yml"
    target_list = ", ".join(f'"{t}"' for t in targets)
    rule_list = ", ".join(f'"{f}"' for f in rule_files)
    scrapes = f"""
          - job_name: fleetwise
            static_configs:
              - targets: [{target_list}]""" if targets else " []"
    conf.write_text(textwrap.dedent(f"""
        global:
          scrape_interval: {scrape_interval}
          evaluation_interval: {scrape_interval}
        rule_files: [{rule_list}]
        scrape_configs:{scrapes}
    """))
    log = workdir / "prometheus.log"
    args = [binary, f"--config.file={conf}", f"--storage.tsdb.path={tsdb or workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            *([f"--storage.tsdb.retention.time={retention}"] if retention else [])]
    with _running(Server(f"http://127.0.0.1:{port}", _spawn(args, log), workdir, log), "/-/ready") as server:
        yield server


@contextlib.contextmanager
def alertmanager(workdir: Path, webhook: str) -> Iterator[Server]:
    """Alertmanager (Debian's prometheus-alertmanager) on a free 127.0.0.1 port, clustering off, routing every
    alert at once to `webhook` (resolved ones too)."""
    binary = require_binary("prometheus-alertmanager")
    port = free_port()
    conf = workdir / "alertmanager.yml"
    conf.write_text(textwrap.dedent(f"""
        route:
          receiver: hook
          group_by: [alertname]
          group_wait: 0s
          group_interval: 1s
          repeat_interval: 1h
        receivers:
          - name: hook
            webhook_configs:
              - url: "{webhook}"
                send_resolved: true
    """))
    log = workdir / "alertmanager.log"
    args = [binary, f"--config.file={conf}", f"--storage.path={workdir / 'am-data'}",
            f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    with _running(Server(f"http://127.0.0.1:{port}", _spawn(args, log), workdir, log), "/-/ready") as server:
        yield server
