"""Bad input on the command line, in a file or in the environment: one line on stderr that names the real
culprit, exit 2 for usage and configuration, 1 for runtime, never a traceback.

Each case runs `fleetwise` in a subprocess, as an operator (or systemd) would.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from tests.helpers import free_port, run_cli

# Kept small so that a case refused too late (after simulating) would still finish and be caught.
SIM = ["simulate", "--nodes", "2", "--days", "0.05", "--interval", "300"]


def _busy_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s


@pytest.fixture(scope="module")
def busy():
    s = _busy_port()
    yield s.getsockname()[1]
    s.close()


def _files(tmp: Path) -> dict[str, str]:
    (tmp / "a-file").write_text("x")
    (tmp / "a-dir").mkdir(exist_ok=True)
    (tmp / "latin1.toml").write_bytes(b'[agent]\nhost = "caf\xe9"\n')
    (tmp / "inf.toml").write_text("[agent]\ninterval_seconds = inf\n")
    (tmp / "tiny.toml").write_text("[agent]\ninterval_seconds = 1e-9\n")
    (tmp / "host.toml").write_text('[agent]\nhost = "node\\\\"\n')
    (tmp / "good.toml").write_text("[agent]\ninterval_seconds = 10\n")
    (tmp / "summary_power_v100.csv").write_text(
        "dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power\n"
        "cifar100,resnet,64,adam,250,30.5,200.0\n")
    return {"tmp": str(tmp), "port": str(free_port())}


# (id, argv with {tmp}/{port}/{busy} placeholders, extra environment, exit code, what the one line must name)
CASES = [
    ("agent-interval-inf", ["agent", "--once", "--interval", "inf"], {}, 2, "interval_seconds"),
    ("agent-interval-1e300", ["agent", "--once", "--interval", "1e300"], {}, 2, "interval_seconds"),
    ("agent-interval-1e-9", ["agent", "--once", "--interval", "1e-9"], {}, 2, "interval_seconds"),
    ("agent-listen-busy", ["agent", "--listen", "127.0.0.1:{busy}", "--collectors", "memory"], {}, 2,
     "cannot listen on 127.0.0.1:{busy}"),
    ("agent-listen-foreign-address", ["agent", "--listen", "192.0.2.77:9464", "--collectors", "memory"], {}, 2,
     "cannot listen on 192.0.2.77:9464"),
    ("agent-store-is-a-file", ["agent", "--once", "--store", "embedded:{tmp}/a-file"], {}, 2,
     "embedded:{tmp}/a-file: not a directory"),
    ("agent-store-unwritable", ["agent", "--once", "--store", "embedded:/proc/fleetwise-store"], {}, 2,
     "embedded:/proc/fleetwise-store: cannot create the store directory"),
    ("agent-store-no-such-user", ["agent", "--once", "--store", "embedded:~nosuchuser-fw/store"], {}, 2,
     "cannot expand ~nosuchuser-fw: no such user"),
    ("agent-spool-is-a-directory", ["agent", "--once", "--store", "influxdb://127.0.0.1:{port}/db"],
     {"FLEETWISE_STORE__SPOOL_DIR": "{tmp}/spool-holder"}, 2, "is a directory"),
    ("agent-env-interval", ["agent", "--once"], {"FLEETWISE_AGENT__INTERVAL_SECONDS": "inf"}, 2,
     "environment FLEETWISE_AGENT__INTERVAL_SECONDS"),
    ("config-env-unknown-collector", ["config", "check", "{tmp}/good.toml"],
     {"FLEETWISE_COLLECTORS__NOPE__X": "1"}, 2, "environment FLEETWISE_COLLECTORS__NOPE__X"),
    ("config-not-utf8", ["config", "check", "{tmp}/latin1.toml"], {}, 2, "{tmp}/latin1.toml: not UTF-8"),
    ("config-interval-inf", ["config", "check", "{tmp}/inf.toml"], {}, 2, "agent.interval_seconds"),
    ("config-interval-below-floor", ["config", "check", "{tmp}/tiny.toml"], {}, 2, "agent.interval_seconds"),
    ("config-host-uncarriable", ["config", "check", "{tmp}/host.toml"], {}, 2, "agent.host"),
    ("ingest-bad-port", ["ingest", "zeus", "{tmp}/summary_power_v100.csv", "--store", "influxdb://127.0.0.1:99999/x"],
     {}, 2, "Port out of range"),
    ("ingest-epoch-out-of-range", ["ingest", "zeus", "{tmp}/summary_power_v100.csv", "--store",
                                   "embedded:{tmp}/ingested", "--epoch", "99999999999"], {}, 2, "--epoch"),
    ("ingest-epoch-year-9999", ["ingest", "zeus", "{tmp}/summary_power_v100.csv", "--store",
                                "embedded:{tmp}/ingested", "--epoch", "9999-01-01"], {}, 2, "--epoch"),
    ("ingest-store-is-a-file", ["ingest", "zeus", "{tmp}/summary_power_v100.csv", "--store", "embedded:{tmp}/a-file"],
     {}, 2, "not a directory"),
    ("simulate-days-inf", [*SIM[:3], "--days", "inf", "--store", "embedded:{tmp}/sim"], {}, 2, "--days"),
    ("simulate-nodes-absurd", ["simulate", "--nodes", "1000000000", "--store", "embedded:{tmp}/sim"], {}, 2,
     "--nodes"),
    ("simulate-interval-1e-9", [*SIM[:5], "--interval", "1e-9", "--store", "embedded:{tmp}/sim"], {}, 2,
     "--interval"),
    ("simulate-truth-is-a-directory", [*SIM, "--store", "embedded:{tmp}/sim", "--truth", "{tmp}/a-dir"], {}, 2,
     "--truth {tmp}/a-dir is a directory"),
    ("simulate-store-no-such-user", [*SIM, "--store", "embedded:~nosuchuser-fw/sim"], {}, 2, "~nosuchuser-fw"),
    ("simulate-env-give-up", [*SIM, "--store", "embedded:{tmp}/sim"], {"FLEETWISE_STORE__GIVE_UP_SECONDS": "inf"},
     2, "environment FLEETWISE_STORE__GIVE_UP_SECONDS"),
    ("models-show-state-file", ["models", "show", "--state", "{tmp}/a-file"], {}, 2,
     "state directory {tmp}/a-file: not a directory"),
    ("analyze-until", ["analyze", "--store", "embedded:{tmp}/a-dir", "--until", "yesterday-ish",
                       "--state", "{tmp}/state"], {}, 2, "--until 'yesterday-ish'"),
]


@pytest.mark.parametrize("argv, env, code, culprit", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_clear_line(tmp_path, busy, argv, env, code, culprit):
    values = {**_files(tmp_path), "busy": str(busy)}
    (tmp_path / "spool-holder").mkdir()
    fill = {k: v.format(**values) for k, v in env.items()}
    if "FLEETWISE_STORE__SPOOL_DIR" in fill:
        # The spool file's own path is a directory (the name the agent derives from the store URL).
        from agents.config import StoreSettings
        from agents.stores.url import parse_store_url
        from agents.stores.writers import spool_path

        url = parse_store_url(argv[-1].format(**values))
        spool_path(url, StoreSettings(spool_dir=Path(fill["FLEETWISE_STORE__SPOOL_DIR"]))).mkdir(parents=True)
    result = run_cli([a.format(**values) for a in argv], env={**os.environ, **fill}, cwd=tmp_path)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == code, result.stderr
    assert len(lines) == 1, lines
    assert culprit.format(**values) in lines[0], lines[0]
