"""Answers that are not InfluxDB's: plain HTTP to an HTTPS port, a proxy's HTML page. They say nothing about
the data, so every writer (agent, ingest) keeps the batch and retries, and the reader says so in one line.

The foreign server is a small HTTP server on 127.0.0.1 run by the test; when it is switched to forwarding,
it passes the real influxd's answers through (headers included), as a well-behaved proxy does.
"""

from __future__ import annotations

import json
import os

import pytest

from agents.config import StoreSettings
from agents.points import Point
from agents.query import QueryError, open_reader
from agents.stores.influxdb import InfluxV1Writer
from agents.stores.result import Outcome
from agents.stores.url import parse_store_url
from agents.stores.writers import open_sink
from tests.helpers import run_cli
from tests.http_fakes import ForeignServer

T0 = 1_790_000_000_000_000_000
# What Go's net/http (influxd, most proxies in Go) answers to plain HTTP on a TLS port, and a login page.
HTTPS_PORT = (400, "text/plain; charset=utf-8", b"Client sent an HTTP request to an HTTPS server.\n")
LOGIN_PAGE = (200, "text/html; charset=utf-8", b"<html><body>Please sign in (token=abc)</body></html>")
BAD_GATEWAY = (502, "text/html", b"<html><body>502 Bad Gateway</body></html>")


@pytest.fixture
def foreign():
    servers: list[ForeignServer] = []

    def make(answer):
        servers.append(ForeignServer(answer))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _points(n: int) -> list[Point]:
    return [Point("memory", {"host": f"node{i % 3}"}, {"used_bytes": float(i)}, T0 + i) for i in range(n)]


@pytest.mark.parametrize("answer", [HTTPS_PORT, LOGIN_PAGE, BAD_GATEWAY], ids=["https-port", "login-page", "502"])
def test_a_foreign_answer_is_retry_never_ok_or_rejected(foreign, answer):
    server = foreign(answer)
    writer = InfluxV1Writer(parse_store_url(server.url + "/fleet"))
    result = writer.send(b"memory,host=a used_bytes=1 1")
    writer.close()
    assert result.outcome is Outcome.RETRY
    assert "not an InfluxDB answer" in result.message
    assert "sign in" not in result.message and "token=abc" not in result.message  # the page is never quoted


def test_the_agent_keeps_the_batch_through_a_proxy_page_then_delivers_it_once(foreign, influxdb_server, tmp_path):
    server = foreign(HTTPS_PORT)
    store = open_sink(server.url + "/fleet", StoreSettings(spool_dir=tmp_path / "spool", flush_interval_seconds=0.01))
    try:
        store.enqueue(_points(50))
        batch = store.spool.peek(5000)
        assert batch is not None and batch.points == 50
        for answer in (HTTPS_PORT, LOGIN_PAGE):
            server.answer = answer
            assert store.shipper.ship(batch) is False
        stats = store.spool.stats()
        # Kept, whole: nothing dead-lettered (the data is fine), nothing counted as sent (nothing was).
        assert (stats.queued_batches, stats.dead_letter_points, stats.sent_points) == (1, 0, 0)
        assert store.spool.dead_letters() == []
        server.target = influxdb_server.url  # the proxy is fixed: InfluxDB answers through it
        assert store.shipper.ship(store.spool.peek(5000)) is True
        assert store.spool.stats().sent_points == 50
    finally:
        store.close(0)
    check = InfluxV1Writer(parse_store_url(influxdb_server.url.replace("http://", "influxdb://") + "/fleet"))
    rows = check.query('SELECT count("used_bytes") FROM "memory"')["results"][0]["series"][0]["values"][0][1]
    check.close()
    assert rows == 50


def test_a_real_influxdb_refusal_is_still_bad_data(influxdb_server):
    # Recognising InfluxDB's answers must not turn its own "this line is malformed" into a retry.
    writer = InfluxV1Writer(parse_store_url(influxdb_server.url.replace("http://", "influxdb://") + "/fleet"))
    assert writer.send(b"memory,host=a used_bytes=1 1").outcome is Outcome.OK
    result = writer.send(b"memory,host=a used_bytes=1 1\nmemory,host=a used_bytes=oops 2")
    writer.close()
    assert result.outcome is Outcome.REJECTED and result.status == 400
    assert result.rejected == {b"memory,host=a used_bytes=oops 2": "invalid boolean"}


@pytest.mark.parametrize("answer", [HTTPS_PORT, LOGIN_PAGE], ids=["https-port", "login-page"])
def test_the_reader_says_it_is_not_influxdb(foreign, answer):
    server = foreign(answer)
    with open_reader(server.url + "/fleet") as reader, pytest.raises(QueryError) as info:
        reader.measurements()
    assert "not an InfluxDB answer" in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("answer", [HTTPS_PORT, LOGIN_PAGE], ids=["https-port", "login-page"])
def test_ingest_into_a_foreign_server_fails_without_writing_or_dead_lettering(foreign, answer, tmp_path):
    server = foreign(answer)
    trace = tmp_path / "summary_power_v100.csv"
    trace.write_text("dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power\n"
                     "cifar100,resnet,64,adam,250,30.5,200.0\n")
    env = {**os.environ, "FLEETWISE_STORE__GIVE_UP_SECONDS": "1", "FLEETWISE_STORE__RETRY_BASE_SECONDS": "0.1"}
    result = run_cli(["ingest", "zeus", str(trace), "--store", server.url + "/traces", "--format", "json"],
                     env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "not an InfluxDB answer" in lines[0] and "Traceback" not in result.stderr
    assert server.requests >= 2  # retried, not given up at the first answer
    assert json.loads(result.stdout or "null") is None
