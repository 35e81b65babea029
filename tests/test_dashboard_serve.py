"""`fleetwise dashboard`: listen address, basic auth from the environment or a file (never argv, never
printed), and a real server answering over HTTP."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from agents.stores.secrets import SecretError
from dashboard import auth
from dashboard.serve import parse_listen
from tests.helpers import run_cli

SECRET = "s3cr3t-pa55'\";"


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_listen_addresses():
    assert parse_listen("127.0.0.1:8050") == ("127.0.0.1", 8050)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    assert parse_listen("localhost:0") == ("localhost", 0)
    for bad in ("8050", "127.0.0.1", "example.org:80", "127.0.0.1:http", "127.0.0.1:70000", ":8050"):
        with pytest.raises(ValueError, match="--listen"):
            parse_listen(bad)


def test_the_command_listens_on_localhost_unless_told_otherwise():
    import argparse

    from fleetwise.cli import _dashboard_parser

    parser = argparse.ArgumentParser()
    _dashboard_parser(parser.add_subparsers())
    assert parse_listen(parser.parse_args(["dashboard"]).listen) == ("127.0.0.1", 8050)


def test_credentials_from_the_environment_or_a_file(tmp_path):
    assert auth.from_env({}) is None
    a = auth.from_env({"FLEETWISE_DASHBOARD_USER": "ops", "FLEETWISE_DASHBOARD_PASSWORD": SECRET})
    assert a.allows(_basic("ops", SECRET))
    assert not a.allows(_basic("ops", SECRET + "x")) and not a.allows(_basic("root", SECRET))
    assert not a.allows(None) and not a.allows("Bearer x") and not a.allows("Basic !!notbase64")
    assert SECRET not in repr(a)
    f = tmp_path / "password"
    f.write_text(SECRET + "\n")
    a = auth.from_env({"FLEETWISE_DASHBOARD_USER": "ops", "FLEETWISE_DASHBOARD_PASSWORD_FILE": str(f)})
    assert a.password == SECRET
    with pytest.raises(SecretError, match="FLEETWISE_DASHBOARD_USER is not"):
        auth.from_env({"FLEETWISE_DASHBOARD_PASSWORD": SECRET})
    with pytest.raises(SecretError, match="neither FLEETWISE_DASHBOARD_PASSWORD") as e:
        auth.from_env({"FLEETWISE_DASHBOARD_USER": "ops"})
    with pytest.raises(SecretError, match="PASSWORD_FILE=/nonexistent"):
        auth.from_env({"FLEETWISE_DASHBOARD_USER": "ops", "FLEETWISE_DASHBOARD_PASSWORD_FILE": "/nonexistent"})
    assert SECRET not in str(e.value)


def test_basic_auth_guards_pages_assets_and_callbacks(small_fleet):
    from dashboard.app import create_app
    from dashboard.context import Context

    app = create_app(Context(f"embedded:{small_fleet / 'store'}", small_fleet / "state"),
                     auth=auth.BasicAuth("ops", SECRET))
    client = app.server.test_client()
    for path in ("/", "/node?node=x", "/_dash-layout", "/_fleetwise/bootstrap.min.css"):
        r = client.get(path)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Basic realm="fleetwise"', path
    assert client.post("/_dash-update-component", json={}).status_code == 401
    ok = client.get("/", headers={"Authorization": _basic("ops", SECRET)})
    assert ok.status_code == 200 and b"fleetwise" in ok.data
    css = client.get("/_fleetwise/bootstrap.min.css", headers={"Authorization": _basic("ops", SECRET)})
    assert css.status_code == 200 and b"Bootstrap" in css.data[:200]  # served here, no CDN


def test_cli_refuses_bad_arguments_in_one_line(tmp_path):
    r = run_cli(["dashboard", "--store", f"embedded:{tmp_path / 'none'}"], cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip().endswith("no such store directory")
    (tmp_path / "store").mkdir()
    r = run_cli(["dashboard", "--store", f"embedded:{tmp_path / 'store'}", "--listen", "0.0.0.0"], cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "HOST:PORT" in r.stderr
    r = run_cli(["dashboard", "--store", f"embedded:{tmp_path / 'store'}", "--listen", "127.0.0.1:0"], cwd=tmp_path,
                env={**os.environ, "FLEETWISE_DASHBOARD_PASSWORD": SECRET})
    assert r.returncode == 2 and "FLEETWISE_DASHBOARD_USER" in r.stderr and SECRET not in r.stderr + r.stdout


def test_cli_serves_on_localhost_with_auth_from_a_file(tmp_path, small_fleet):
    secret = tmp_path / "password"
    secret.write_text(SECRET + "\n")
    env = {**os.environ, "FLEETWISE_DASHBOARD_USER": "ops", "FLEETWISE_DASHBOARD_PASSWORD_FILE": str(secret)}
    proc = subprocess.Popen([sys.executable, "-m", "fleetwise", "dashboard", "--store",
                             f"embedded:{small_fleet / 'store'}", "--state", str(small_fleet / "state"),
                             "--listen", "127.0.0.1:0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=tmp_path)
    try:
        line = proc.stdout.readline()  # blocks until the server is bound (or the process died)
        assert line.startswith("fleetwise dashboard on http://127.0.0.1:"), (line, proc.poll())
        assert "(basic auth on)" in line and SECRET not in line
        url = line.split()[3]
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, timeout=60)
        assert e.value.code == 401
        req = urllib.request.Request(url + "fleet?range=7d", headers={"Authorization": _basic("ops", SECRET)})
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 200 and b"react-entry-point" in r.read()
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=60)
    assert SECRET not in out + err  # never printed, never logged (werkzeug logs no request lines either)


def test_the_demo_ends_serving_the_dashboard_on_localhost_until_ctrl_c(tmp_path, small_fleet, small_fleet_analyzed):
    """`make demo`'s last step (fleetwise.demo.serve_dashboard) over the demo's store and state (here the small
    analyzed fleet, linked where the demo writes them): it prints a 127.0.0.1 URL that serves the pages, and
    Ctrl-C (SIGINT) stops it with exit 0. The steps before it are test_pipeline's demo test (--no-serve)."""
    import signal

    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "demo-store").symlink_to(small_fleet / "store")
    (tmp_path / "var" / "state").symlink_to(small_fleet / "state")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETWISE_DASHBOARD_")}
    # Ctrl-C reaches a terminal's foreground job with SIGINT handled; a suite run as a background job (`cmd &`
    # without job control) hands it down ignored, so the child takes Python's default handler back itself
    proc = subprocess.Popen([sys.executable, "-c", "import signal; signal.signal(signal.SIGINT, "
                             "signal.default_int_handler); from fleetwise.demo import serve_dashboard; "
                             "raise SystemExit(serve_dashboard())"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=tmp_path)
    try:
        said = []
        while not (said and said[-1].startswith("fleetwise dashboard on ")):
            line = proc.stdout.readline()  # blocks until the next line (or EOF when the process died)
            assert line, (said, proc.poll(), proc.stderr.read() if proc.poll() is not None else "")
            said.append(line)
        url = said[-1].split()[3]
        assert url.startswith("http://127.0.0.1:") and "embedded:./var/demo-store" in said[-1], said
        with urllib.request.urlopen(url + "workloads", timeout=60) as r:
            assert r.status == 200 and b"react-entry-point" in r.read()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
