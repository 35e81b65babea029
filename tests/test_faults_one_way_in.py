"""One way in: every writer (agent, simulate, ingest) and the reader reach InfluxDB through one connection
module, so a store behind HTTPS with a private CA (`[store] ca_file`) that can be written can also be read.

The HTTPS endpoint is a TLS-terminating proxy on 127.0.0.1 (run by the test, certificate from a CA made
with openssl for this test) in front of the real influxd.
"""

from __future__ import annotations

import os
import ssl
import subprocess

import pytest

from agents.points import Point
from agents.query import QueryError, open_reader
from agents.simulate import simulate
from agents.stores.settings import StoreSettings
from agents.stores.writers import StoreWriteError, open_sink, open_writer
from tests.conftest import require_binary
from tests.helpers import run_cli
from tests.http_fakes import ForeignServer

T0 = 1_790_000_000_000_000_000


@pytest.fixture(scope="module")
def private_ca(tmp_path_factory):
    """(CA certificate path, server context for 127.0.0.1 signed by that CA)."""
    openssl = require_binary("openssl")
    d = tmp_path_factory.mktemp("pki")

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=d, check=True, capture_output=True)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
        "-subj", "/CN=fleetwise test CA")
    run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
        "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(d / "server.pem", d / "server.key")
    return d / "ca.pem", context


@pytest.fixture
def https_influx(influxdb_server, private_ca):
    ca, context = private_ca
    proxy = ForeignServer(target=influxdb_server.url, tls=context)
    yield proxy.url, ca
    proxy.close()


def _count(reader, measurement: str, field: str) -> int:
    frame = reader.frame(measurement, [field], "2020-01-01", "2099-01-01")
    return len(frame)


def test_a_private_ca_store_is_written_and_read_by_every_entry_point(https_influx, tmp_path):
    base, ca = https_influx
    url = f"{base}/fleet"
    settings = StoreSettings(ca_file=ca, spool_dir=tmp_path / "spool", give_up_seconds=5,
                             retry_base_seconds=0.1, retry_max_seconds=0.5)
    # ingest's and simulate's writer:
    writer = open_writer(url, settings)
    try:
        assert writer.write([Point("memory", {"host": f"n{i}"}, {"used_bytes": float(i)}, T0 + i)
                             for i in range(3)]) == 3
    finally:
        writer.close()
    # the agent's (spooled) writer:
    store = open_sink(url, settings)
    store.enqueue([Point("memory", {"host": "agent"}, {"used_bytes": 7.0}, T0 + 10)])
    assert store.close(10) is True
    # simulate, end to end through open_writer:
    result = simulate(nodes=2, days=0.02, interval=300, seed=1, store=f"{base}/sim", settings=settings,
                      truth_path=tmp_path / "truth.json")
    # ... and the reader, through the same endpoint and CA.
    with open_reader(url, settings) as reader:
        assert _count(reader, "memory", "used_bytes") == 4
    with open_reader(f"{base}/sim", settings) as reader:
        assert sorted(reader.measurements()) == sorted(name for name, n in result.rows_by_measurement.items() if n)


def test_without_the_ca_neither_writer_nor_reader_trusts_the_store(https_influx, tmp_path):
    base, _ = https_influx
    url = f"{base}/fleet"
    settings = StoreSettings(give_up_seconds=0.5, retry_base_seconds=0.1, retry_max_seconds=0.2)
    writer = open_writer(url, settings)
    try:
        with pytest.raises(StoreWriteError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
            writer.write([Point("memory", {"host": "n"}, {"used_bytes": 1.0}, T0)])
    finally:
        writer.close()
    with open_reader(url, settings) as reader, pytest.raises(QueryError, match="certificate verify failed"):
        reader.measurements()


def test_ingest_uses_the_store_settings_from_the_environment(https_influx, tmp_path):
    base, ca = https_influx
    trace = tmp_path / "summary_power_v100.csv"
    trace.write_text("dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power\n"
                     "cifar100,resnet,64,adam,250,30.5,200.0\n")
    env = {**os.environ, "FLEETWISE_STORE__CA_FILE": str(ca)}
    result = run_cli(["ingest", "zeus", str(trace), "--store", f"{base}/traces"], env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    with open_reader(f"{base}/traces", StoreSettings(ca_file=ca)) as reader:
        assert _count(reader, "workload_profile", "time_per_epoch_seconds") == 1


def test_the_prometheus_reader_verifies_https_with_the_store_ca_file(private_ca, tmp_path):
    from tests.services import prometheus

    ca, context = private_ca
    with prometheus(tmp_path, [], "10s") as prom:
        proxy = ForeignServer(target=prom.url, tls=context)
        try:
            url = "prometheuss://" + proxy.url.split("://", 1)[1]
            # The proxy forwards to a real, empty Prometheus: with the CA the reader gets its answer (no series);
            # without it the certificate is refused, one QueryError, never an unverified read.
            with open_reader(url, StoreSettings(ca_file=ca)) as reader:
                assert reader.measurements() == []
            with pytest.raises(QueryError, match=r"(?i)certificate"), open_reader(url) as reader:
                reader.measurements()
        finally:
            proxy.close()
