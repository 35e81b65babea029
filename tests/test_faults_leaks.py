"""Secrets must not leak: through a textfile link a job controls, a malformed file quoted in the log, or a store
URL echoed back by a refusal or by `config show`."""

from __future__ import annotations

import logging
import os

import pytest

from agents.collectors.base import Cycle, Roots
from agents.collectors.textfile import TextfileCollector, TextfileOptions
from agents.stores.url import StoreURLError, parse_store_url
from tests.helpers import run_cli

SECRET = "tok-S3CRET-5e2f"


def _layout(tmp_path):
    """The Slurm prolog's layout: root-owned textfile/ with job-N.prom -> ../jobs/N/progress.prom."""
    textfile, jobs = tmp_path / "fw" / "textfile", tmp_path / "fw" / "jobs"
    textfile.mkdir(parents=True)
    for job in ("7", "42"):
        (jobs / job).mkdir(parents=True)
        (textfile / f"job-{job}.prom").symlink_to(f"../jobs/{job}/progress.prom")
    secret = tmp_path / "agent.env"
    secret.write_text(f"FLEETWISE_INFLUXDB_TOKEN={SECRET}\nfleetwise_job_progress_total{{job=\"42\"}} 1\n")
    return textfile, jobs, secret


def _collect(textfile, caplog):
    collector = TextfileCollector(Roots(), "n1", TextfileOptions(directory=textfile))
    with caplog.at_level(logging.DEBUG, logger="fleetwise.collectors.textfile"):
        points = list(collector.collect(Cycle(time_ns=1)))
    return {p.tags["job"]: p.fields["progress"] for p in points if p.measurement == "job_progress"}


def test_links_out_of_the_textfile_tree_are_not_followed_and_nothing_is_quoted(tmp_path, caplog):
    textfile, jobs, secret = _layout(tmp_path)
    # Job 7 behaves: a regular file behind the prolog's link.
    (jobs / "7" / "progress.prom").write_text('fleetwise_job_progress_total{job="7",unit="steps"} 12\n')
    # Job 42 makes its progress.prom a link to the agent's secrets (or /proc/self/environ: the agent's own).
    (jobs / "42" / "progress.prom").symlink_to(secret)
    # Anyone who could drop a link into the directory itself gets nowhere either.
    (textfile / "environ.prom").symlink_to("/proc/self/environ")
    (textfile / "secret.prom").symlink_to(secret)
    # A malformed regular file holding a secret: the log names the line, never its text.
    (textfile / "broken.prom").write_text(f'fleetwise_job_progress_total{{job="1"}} 1\nbroken {SECRET} here\n')
    assert _collect(textfile, caplog) == {"7": 12.0}
    assert SECRET not in caplog.text
    assert "FLEETWISE_INFLUXDB_TOKEN" not in caplog.text
    messages = {r.getMessage() for r in caplog.records}
    assert any("job-42.prom" in m and "link to a link; not followed" in m for m in messages), messages
    assert any("environ.prom" in m and "outside" in m for m in messages), messages
    assert any("broken.prom" in m and "line 2: not Prometheus text format" in m for m in messages), messages


@pytest.mark.parametrize("url, shown", [
    ("influxdb://admin:S3cretPW@127.0.0.1:8086/fleet", "influxdb://admin:***@127.0.0.1:8086/fleet"),
    ("influxdb://127.0.0.1:8086/fleet?p=S3cretPW", "influxdb://127.0.0.1:8086/fleet?p=***"),
    ("influxdb://127.0.0.1:8086/fleet?u=admin&password=S3cretPW", "password=***"),
    ("influxdb2://127.0.0.1:8086/b?org=o&token=S3cretPW", "token=***"),
    ("postgres://admin:S3cretPW@db/x", "postgres://admin:***@db/x"),
    ("influxdb://admin:S3cretPW@127.0.0.1:99999/fleet", "influxdb://admin:***@127.0.0.1:99999/fleet"),
])
def test_a_store_url_with_a_secret_is_refused_without_printing_it(url, shown):
    with pytest.raises(StoreURLError) as info:
        parse_store_url(url)
    assert "S3cretPW" not in str(info.value) and shown in str(info.value)


def test_cli_never_prints_a_store_secret_back(tmp_path):
    for args, env in (
        (["agent", "--once", "--store", "influxdb://admin:S3cretPW@127.0.0.1:8086/fleet"], {}),
        (["config", "show"], {"FLEETWISE_STORE__URL": "influxdb://127.0.0.1:8086/fleet?p=S3cretPW"}),
        (["config", "check", str(tmp_path / "agent.toml")], {}),
    ):
        (tmp_path / "agent.toml").write_text('[store]\nurl = "influxdb://u:S3cretPW@h:8086/db"\n')
        result = run_cli(args, env={**os.environ, **env}, cwd=tmp_path)
        assert result.returncode == 2, (args, result.stdout)
        assert "S3cretPW" not in result.stdout + result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "store" in lines[0] and "Traceback" not in result.stderr
