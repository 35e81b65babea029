"""The InfluxDB writers against the real influxd: points land, gzip, database creation, auth, errors."""

from __future__ import annotations

import gzip
import http.client
import logging
import ssl
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.points import InvalidPoint, Point
from agents.stores.connection import ssl_context
from agents.stores.influxdb import InfluxV1Writer, InfluxV2Writer, quote_identifier, rejected_lines
from agents.stores.lineproto import LineEncoder
from agents.stores.result import Outcome
from agents.stores.secrets import Credentials, SecretError, influx_credentials
from agents.stores.url import parse_store_url

T0 = 1_790_000_000_000_000_000


class RecordingProxy:
    """A real HTTP hop in front of influxd that keeps what the writer sent (headers, raw body)."""

    def __init__(self, target: str) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        target_parts = urllib.parse.urlsplit(target)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                proxy.requests.append((self.command, self.path, dict(self.headers), body))
                conn = http.client.HTTPConnection(target_parts.hostname, target_parts.port, timeout=10)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(self.command, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                conn.close()

            do_POST = do_GET = _forward

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def store_url(base: str, db: str = "fleet", user: str = "") -> str:
    host = base.removeprefix("http://")
    return f"influxdb://{user + '@' if user else ''}{host}/{db}"


def count(writer: InfluxV1Writer, q: str) -> int:
    series = writer.query(q)["results"][0].get("series")
    return series[0]["values"][0][1] if series else 0


def points(n: int, field: str = "used_bytes") -> list[Point]:
    return [Point("memory", {"host": f"node{i % 3}"}, {field: float(i)}, T0 + i) for i in range(n)]


def test_points_land_gzipped_and_database_is_created(influxdb_server):
    proxy = RecordingProxy(influxdb_server.url)
    try:
        writer = InfluxV1Writer(parse_store_url(store_url(proxy.url)))
        payload = "\n".join(p.to_line() for p in points(250)).encode()
        result = writer.send(payload)
        assert result.outcome is Outcome.OK
        # 404 database not found -> CREATE DATABASE "fleet" -> the same body again
        methods = [(m, urllib.parse.urlsplit(p).path) for m, p, _, _ in proxy.requests]
        assert methods == [("POST", "/write"), ("POST", "/query"), ("POST", "/write")]
        _, path, headers, body = proxy.requests[-1]
        assert urllib.parse.parse_qs(urllib.parse.urlsplit(path).query) == {"db": ["fleet"], "precision": ["ns"]}
        assert headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(body) == payload
        assert len(body) < len(payload) / 3
        create = urllib.parse.parse_qs(proxy.requests[1][3].decode())
        assert create == {"q": ['CREATE DATABASE "fleet"']}
        assert "Authorization" not in headers
        assert count(writer, 'SELECT count("used_bytes") FROM "memory"') == 250
        assert count(writer, "SELECT count(\"used_bytes\") FROM \"memory\" WHERE \"host\" = 'node1'") == 83
    finally:
        proxy.close()


def test_retention_policy_in_url_is_sent(influxdb_server):
    writer = InfluxV1Writer(parse_store_url(store_url(influxdb_server.url, "rpdb") + "?rp=week"))
    writer.ensure_database()
    writer.query('CREATE RETENTION POLICY "week" ON "rpdb" DURATION 7d REPLICATION 1')
    now = Point("memory", {"host": "h"}, {"used_bytes": 1.0}, time.time_ns())
    assert writer.send(now.to_line().encode()).outcome is Outcome.OK
    assert count(writer, 'SELECT count("used_bytes") FROM "week"."memory"') == 1
    # a point older than the policy keeps is refused for good: rejected (dead-lettered), not retried
    old = writer.send(points(1)[0].to_line().encode())
    assert old.outcome is Outcome.REJECTED and "points beyond retention policy" in old.message
    missing = InfluxV1Writer(parse_store_url(store_url(influxdb_server.url, "rpdb") + "?rp=nope"))
    result = missing.send(points(1)[0].to_line().encode())
    assert result.outcome is Outcome.RETRY and "retention policy not found" in result.message


def test_parse_errors_name_the_rejected_lines(influxdb_server):
    writer = InfluxV1Writer(parse_store_url(store_url(influxdb_server.url)))
    tricky = b"m,host=h v=\"a': b\" x"  # contains the separator InfluxDB uses after the line
    payload = b"m,host=h v=1 1\nm,bad v= 2\n" + tricky + b"\nm,host=h v=3 3"
    result = writer.send(payload)
    assert result.outcome is Outcome.REJECTED and result.status == 400
    assert result.rejected == {b"m,bad v= 2": "missing tag value", tricky: "bad timestamp"}
    assert count(writer, 'SELECT count("v") FROM "m"') == 2  # the good ones were written (partial write)


def test_rejected_lines_parser_handles_prefixes_and_unknown_lines():
    lines = {b"a b", b"c"}
    message = "partial write: unable to parse 'a b': invalid field format\nunable to parse 'zz': x dropped=0"
    assert rejected_lines(message, lines) == {b"a b": "invalid field format"}
    assert rejected_lines("field type conflict", lines) == {}


def test_server_down_is_a_retry(influxdb_server):
    writer = InfluxV1Writer(parse_store_url(store_url(influxdb_server.url)), timeout_seconds=2)
    assert writer.send(b"m v=1 1").outcome is Outcome.OK
    influxdb_server.stop()
    result = writer.send(b"m v=2 2")
    assert result.outcome is Outcome.RETRY and "ConnectionRefusedError" in result.message


def test_identifiers_are_validated_and_quoted():
    assert quote_identifier("fleet_1.x-y") == '"fleet_1.x-y"'
    for bad in ('a"; DROP DATABASE "b', "a b", ""):
        with pytest.raises(ValueError, match="invalid InfluxDB identifier"):
            quote_identifier(bad)


def test_tls_is_verified_by_default():
    context = ssl_context(None)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    writer = InfluxV1Writer(parse_store_url("influxdbs://example.invalid:8086/fleet"))
    assert writer._context.verify_mode is ssl.CERT_REQUIRED and writer._context.check_hostname


def test_secrets_from_env_or_file(tmp_path):
    secret_file = tmp_path / "pw"
    secret_file.write_text("s3cret-from-file\n")
    env = {"FLEETWISE_INFLUXDB_PASSWORD_FILE": str(secret_file), "FLEETWISE_INFLUXDB_TOKEN": "tok"}
    creds = influx_credentials("writer", env)
    assert (creds.user, creds.password, creds.token) == ("writer", "s3cret-from-file", "tok")
    assert "s3cret" not in repr(creds) and "tok'" not in repr(creds)
    with pytest.raises(SecretError, match="PASSWORD_FILE=/nonexistent"):
        influx_credentials("", {"FLEETWISE_INFLUXDB_PASSWORD_FILE": "/nonexistent"})


def test_token_is_sent_as_token_header(influxdb_server):
    proxy = RecordingProxy(influxdb_server.url)
    try:
        writer = InfluxV1Writer(parse_store_url(store_url(proxy.url)), Credentials(token="tok-123"))
        writer.send(b"m v=1 1")  # 1.x without auth ignores the header; 2.x/3.x v1 compat checks it
        assert proxy.requests[0][2]["Authorization"] == "Token tok-123"
    finally:
        proxy.close()


@pytest.fixture
def influxdb_auth(tmp_path_factory):
    from tests.services import influxd

    with influxd(tmp_path_factory.mktemp("influxd-auth"), auth=True) as server:
        admin = InfluxV1Writer(parse_store_url(store_url(server.url, "_internal")))
        admin.query("CREATE USER admin WITH PASSWORD 'adm-Pw-77' WITH ALL PRIVILEGES")
        admin.credentials = Credentials("admin", "adm-Pw-77")
        admin.query("CREATE USER plain WITH PASSWORD 'plain-Pw-88'")
        yield server


def test_auth_failure_logs_no_secret(influxdb_auth, caplog):
    caplog.set_level(logging.DEBUG)
    url = parse_store_url(store_url(influxdb_auth.url, user="admin"))
    wrong = InfluxV1Writer(url, Credentials("admin", "wrong-Pw-99"))
    result = wrong.send(b"m v=1 1")
    wrong.send(b"m v=1 1")
    assert result.outcome is Outcome.RETRY and result.status == 401
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "refused the credentials" in errors[0].getMessage()  # logged once
    import base64

    encoded = base64.b64encode(b"admin:wrong-Pw-99").decode()
    for text in (caplog.text, result.message):
        assert "wrong-Pw-99" not in text and encoded not in text

    right = InfluxV1Writer(url, Credentials("admin", "adm-Pw-77"))
    assert right.send(b"m v=1 1").outcome is Outcome.OK  # and the database was created with admin rights
    assert count(right, 'SELECT count("v") FROM "m"') == 1
    assert "adm-Pw-77" not in caplog.text


def test_missing_database_without_rights_says_what_to_do(influxdb_auth, caplog):
    caplog.set_level(logging.INFO)
    writer = InfluxV1Writer(parse_store_url(store_url(influxdb_auth.url, "other", user="plain")),
                            Credentials("plain", "plain-Pw-88"))
    result = writer.send(b"m v=1 1")
    assert result.outcome is Outcome.RETRY
    assert 'CREATE DATABASE "other"' in caplog.text and "could not be created" in caplog.text
    assert "plain-Pw-88" not in caplog.text


def test_v2_writer_construction_and_404_on_influxdb_1x(influxdb_server):
    url = parse_store_url(influxdb_server.url.replace("http://", "influxdb2://") + "/bucket?org=acme")
    with pytest.raises(ValueError, match="needs a token"):
        InfluxV2Writer(url, Credentials())
    writer = InfluxV2Writer(url, Credentials(token="tok"), timeout_seconds=3)
    assert (writer.bucket, writer.org) == ("bucket", "acme")
    assert writer.client.url == influxdb_server.url and writer.client.org == "acme"
    # influxd 1.6.7 has no /api/v2/write: the batch must be kept for a retry, never dead-lettered.
    result = writer.send(b"m v=1 1")
    assert result.outcome is Outcome.RETRY and result.status == 404
    writer.close()


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=6)
values = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**63, 2**63 - 1), st.booleans(),
                   st.text(max_size=5))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["cpu", "m e,x", ""]) | names,
                          st.dictionaries(names, names, max_size=3),
                          st.dictionaries(names, values, max_size=4)), min_size=1, max_size=6))
def test_line_encoder_equals_point_to_line(specs):
    encoder = LineEncoder()
    for _ in range(2):  # second pass hits the caches
        for measurement, tags, fields in specs:
            point = Point(measurement, tags, fields, 1_700_000_000_000_000_000)
            try:
                expected = point.to_line()
            except InvalidPoint as e:
                with pytest.raises(InvalidPoint) as got:
                    encoder.encode(point)
                assert str(got.value) == str(e)
            else:
                assert encoder.encode(point) == expected
