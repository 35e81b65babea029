"""The node agent must stay light: no pandas, numpy, pyarrow, duckdb, scikit-learn or dash."""

import json
import os
import subprocess
import sys

import pytest

from agents.collectors.base import Roots
from agents.collectors.nvidia import driver_present

HEAVY = ("pandas", "numpy", "pyarrow", "duckdb", "sklearn", "dash", "scipy", "plotly")

SCRIPT = """
import contextlib, io, json, sys
from fleetwise.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    rc = main(["agent", "--once"])
print(json.dumps({"rc": rc, "lines": len(out.getvalue().splitlines()),
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in %r)}))
"""


def test_agent_once_imports_nothing_heavy():
    result = subprocess.run([sys.executable, "-c", SCRIPT % (HEAVY,)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["rc"] == 0
    assert report["lines"] > 5
    assert report["heavy"] == []


# A running agent, in each mode, for several rounds: a watcher thread waits until the mode has done its
# work (rounds served on /metrics, batches spooled for an unreachable InfluxDB, pending batches folded into
# Parquet by the embedded store's maintenance child), then reports sys.modules and ends the process.
RUNNING_SCRIPT = """
import json, os, sys, threading, time
HEAVY = %r
MODE, WHERE = sys.argv[1], sys.argv[2]

def ready():
    if MODE == "listen":
        import urllib.request
        body = urllib.request.urlopen(WHERE, timeout=5).read()
        return time.monotonic() - STARTED > 4 and b"fleetwise_" in body
    if MODE == "influxdb":
        import glob, sqlite3
        files = glob.glob(os.path.join(WHERE, "*.sqlite"))
        return bool(files) and sqlite3.connect(files[0]).execute("SELECT count(*) FROM batches").fetchone()[0] >= 3
    import glob
    return time.monotonic() - STARTED > 4 and bool(glob.glob(os.path.join(WHERE, "*", "day=*", "*.parquet")))

def watch():
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            if ready():
                break
        except Exception:  # not there yet: no spool table, connection refused, locked database
            pass
        time.sleep(0.3)
    else:
        print(json.dumps({"timeout": True}), flush=True)
        os._exit(3)
    print(json.dumps({"heavy": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY),
                      "pynvml": "pynvml" in sys.modules, "analyzer": "analyzer" in sys.modules}), flush=True)
    os._exit(0)

STARTED = time.monotonic()
threading.Thread(target=watch, daemon=True).start()
from fleetwise.cli import main
main(["agent", "--interval", "1", *sys.argv[3:]])
print(json.dumps({"exited": True}), flush=True)
"""


@pytest.mark.parametrize("mode", ["listen", "influxdb", "embedded"])
def test_a_running_agent_imports_nothing_heavy_in_every_mode(mode, tmp_path):
    from tests.helpers import free_port

    env = {**os.environ, "FLEETWISE_STORE__SPOOL_DIR": str(tmp_path / "spool"),
           "FLEETWISE_STORE__FLUSH_INTERVAL_SECONDS": "0.2", "FLEETWISE_STORE__COMPACT_INTERVAL_SECONDS": "2",
           "FLEETWISE_STORE__COMPACT_MIN_FILES": "2"}
    port = free_port()
    args = {"listen": [f"http://127.0.0.1:{port}/metrics", "--listen", f"127.0.0.1:{port}"],
            # nothing listens on the discard port: batches stay in the spool, the writer keeps retrying
            "influxdb": [str(tmp_path / "spool"), "--store", "influxdb://127.0.0.1:9/fleet"],
            "embedded": [str(tmp_path / "store"), "--store", f"embedded:{tmp_path / 'store'}"]}[mode]
    result = subprocess.run([sys.executable, "-c", RUNNING_SCRIPT % (HEAVY,), mode, *args], capture_output=True,
                            text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    # pynvml (2 MB) only where an NVIDIA driver is loaded; nothing of the analyzer (the CLI builds only the
    # agent's parser for `fleetwise agent`)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "heavy": [], "pynvml": driver_present(Roots()), "analyzer": False}


def test_the_agent_command_builds_only_its_own_parser():
    """`fleetwise agent` parses with the agent's parser alone (other subcommands' parsers import analyzer and
    trace modules); every other command line gets the whole parser."""
    from fleetwise.cli import _command, build_parser

    assert _command(["agent", "--listen", ":9100"]) == "agent"
    assert _command(["--log-level", "DEBUG", "agent"]) == "agent"
    assert _command(["--log-level=INFO", "agent", "--once"]) == "agent"
    assert _command(["--help"]) is None
    assert _command(["analyze", "--store", "embedded:x"]) == "analyze"
    choices = build_parser("agent")._subparsers._group_actions[0].choices
    assert list(choices) == ["agent"]
    everything = build_parser(None)._subparsers._group_actions[0].choices
    assert {"agent", "analyze", "ingest", "recommend", "store"} <= set(everything)
