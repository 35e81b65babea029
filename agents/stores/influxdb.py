"""Writers for InfluxDB: the v1 HTTP API (/write, /query) and the v2 write API through influxdb-client.

The v1 writer uses only the standard library so the agent stays light; the v1 API is the one every
InfluxDB serves (1.x natively, 2.x and 3.x through their compatibility APIs, with token auth).
"""

from __future__ import annotations

import dataclasses
import gzip
import http.client
import json
import logging
import re
import time
from pathlib import Path
from urllib.parse import urlencode

from agents.stores.connection import describe_foreign, endpoint, influx_error, is_influx_answer
from agents.stores.result import OK, Outcome, SendResult
from agents.stores.secrets import Credentials
from agents.stores.url import StoreURL

log = logging.getLogger("fleetwise.influxdb")

_IDENTIFIER = re.compile(r"^[A-Za-z0-9_.\-]+$")
_PARSE_ERROR = "unable to parse '"


def quote_identifier(name: str) -> str:
    """InfluxQL double-quoted identifier, after checking the name against the allowed set."""
    if not _IDENTIFIER.match(name):
        raise ValueError(f"invalid InfluxDB identifier {name!r}: must match {_IDENTIFIER.pattern}")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def rejected_lines(message: str, lines: set[bytes]) -> dict[bytes, str]:
    """Lines named in InfluxDB 1.x parse errors ("unable to parse 'LINE': REASON", one per line of the
    message, maybe after "partial write: " and before " dropped=N"), matched exactly against the batch.

    A line may itself contain "': ", so every split point is tried against the batch's lines.
    """
    found: dict[bytes, str] = {}
    for segment in message.split("\n"):
        segment = segment.removeprefix("partial write: ")
        if not segment.startswith(_PARSE_ERROR):
            continue
        body = segment[len(_PARSE_ERROR):]
        start = 0
        while (end := body.find("': ", start)) >= 0:
            candidate = body[:end].encode()
            if candidate in lines:
                reason = re.sub(r" dropped=\d+$", "", body[end + 3:])
                found[candidate] = reason
                break
            start = end + 1
    return found


class InfluxV1Writer:
    """POST line protocol to {base}/write?db=&rp=&precision=ns, gzip-compressed, over one kept-alive connection."""

    format = "line"

    def __init__(self, url: StoreURL, credentials: Credentials | None = None, timeout_seconds: float = 10.0,
                 ca_file: Path | None = None, use_gzip: bool = True, create_database: bool = True) -> None:
        if url.kind != "influxdb":
            raise ValueError(f"{url} is not an InfluxDB v1 URL")
        self.url = url
        self.database = url.database
        quote_identifier(url.database)
        if url.retention_policy:
            quote_identifier(url.retention_policy)
        self.endpoint = endpoint(url, timeout_seconds, ca_file, credentials or Credentials(user=url.user))
        self.timeout = timeout_seconds
        self.use_gzip = use_gzip
        self.create_database = create_database
        self._context = self.endpoint.ssl_context()
        self._conn: http.client.HTTPConnection | None = None
        query = {"db": url.database, "precision": "ns"}
        if url.retention_policy:
            query["rp"] = url.retention_policy
        self._write_path = "/write?" + urlencode(query)
        self._logged: set[str] = set()
        self._create_tried = -1e9

    @property
    def credentials(self) -> Credentials:
        return self.endpoint.credentials

    @credentials.setter
    def credentials(self, value: Credentials) -> None:  # e.g. after creating the first admin user
        self.endpoint = dataclasses.replace(self.endpoint, credentials=value)

    # -- public ---------------------------------------------------------------------------------------------
    def send(self, payload: bytes, timeout: float | None = None) -> SendResult:
        body = gzip.compress(payload, compresslevel=1) if self.use_gzip else payload
        headers = {"Content-Type": "text/plain; charset=utf-8"}
        if self.use_gzip:
            headers["Content-Encoding"] = "gzip"
        try:
            status, answer_headers, answer = self._request("POST", self._write_path, body, headers, timeout)
        except (OSError, http.client.HTTPException) as e:
            return SendResult(Outcome.RETRY, f"{self.url}: {type(e).__name__}: {e}")
        if status == 204 and not answer:
            return OK  # InfluxDB's only success answer to /write, even behind a proxy that drops its headers
        if not is_influx_answer(answer_headers, answer):
            # Not InfluxDB's word on the data (a proxy, a login page, plain HTTP to an HTTPS port): neither
            # success nor bad data. Keep the batch; dead-lettering it would throw good data away.
            # The shipper logs it once per distinct problem; ingest and simulate report it when they give up.
            return SendResult(Outcome.RETRY, describe_foreign(status, answer_headers, answer), status)
        if 200 <= status < 300:
            return OK
        message = _error_text(answer)
        if status in (401, 403):
            self._log_once("auth", "InfluxDB %s refused the credentials (HTTP %d: %s); batches stay in the spool. "
                           "Check the user in the store URL and FLEETWISE_INFLUXDB_PASSWORD(_FILE) or "
                           "FLEETWISE_INFLUXDB_TOKEN(_FILE).", self.url, status, message)
            return SendResult(Outcome.RETRY, f"HTTP {status}: {message}", status)
        if status == 404 or "database not found" in message:
            if self._database_missing():
                return self.send(payload, timeout)  # created just now: no need to wait for a retry
            return SendResult(Outcome.RETRY, f"HTTP {status}: {message}", status)
        if "retention policy not found" in message:
            self._log_once("rp", "InfluxDB %s: %s; create it or fix ?rp= in the store URL", self.url, message)
            return SendResult(Outcome.RETRY, f"HTTP {status}: {message}", status)
        if status == 413 or (400 <= status < 500 and status not in (408, 429)):
            lines = set(payload.split(b"\n"))
            return SendResult(Outcome.REJECTED, f"HTTP {status}: {message}", status, rejected_lines(message, lines))
        return SendResult(Outcome.RETRY, f"HTTP {status}: {message}", status)

    def ensure_database(self) -> bool:
        """CREATE DATABASE (a no-op when it exists). False when the credentials do not allow it."""
        q = f"CREATE DATABASE {quote_identifier(self.database)}"
        try:
            status, answer_headers, answer = self._request(
                "POST", "/query", urlencode({"q": q}).encode(),
                {"Content-Type": "application/x-www-form-urlencoded"}, None)
        except (OSError, http.client.HTTPException) as e:
            log.warning("cannot create InfluxDB database %s at %s: %s", self.database, self.url.base_url, e)
            return False
        if not is_influx_answer(answer_headers, answer):
            log.warning("cannot create InfluxDB database %s at %s: %s", self.database, self.url.base_url,
                        describe_foreign(status, answer_headers, answer))
            return False
        message = _error_text(answer)
        if status == 200 and '"error"' not in answer.decode("utf-8", "replace"):
            log.info("created InfluxDB database %s at %s", self.database, self.url.base_url)
            return True
        log.warning("InfluxDB database %s is missing at %s and could not be created (HTTP %d: %s). Ask an admin "
                    "to run: CREATE DATABASE %s (on 2.x/3.x: create the bucket and its DBRP mapping); "
                    "batches stay in the spool until then.", self.database, self.url.base_url, status, message,
                    quote_identifier(self.database))
        return False

    def query(self, q: str) -> dict:
        """An InfluxQL query on this database (tests, benchmarks, the health check)."""
        status, answer_headers, answer = self._request("POST", "/query?" + urlencode({"db": self.database}),
                                                       urlencode({"q": q}).encode(),
                                                       {"Content-Type": "application/x-www-form-urlencoded"}, None)
        if not is_influx_answer(answer_headers, answer):
            raise RuntimeError(f"InfluxDB query failed: {describe_foreign(status, answer_headers, answer)}")
        if status != 200:
            raise RuntimeError(f"InfluxDB query failed: HTTP {status}: {_error_text(answer)}")
        return json.loads(answer)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # -- internals --------------------------------------------------------------------------------------------
    def _database_missing(self) -> bool:
        """True when the database was created now. Tried at most once a minute: a refusal rarely changes."""
        if self.create_database and time.monotonic() - self._create_tried > 60:
            self._create_tried = time.monotonic()
            if self.ensure_database():
                return True
        self._log_once("nodb", "InfluxDB database %s does not exist at %s (and cannot be created with these "
                       "credentials, or [store] create_database is false): run CREATE DATABASE %s; batches stay "
                       "in the spool.", self.database, self.url.base_url, quote_identifier(self.database))
        return False

    def _connection(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._conn is None:
            host, port = self.endpoint.host, self.endpoint.port
            if self.endpoint.https:
                self._conn = http.client.HTTPSConnection(host, port, timeout=self.timeout, context=self._context)
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        self._conn.timeout = timeout or self.timeout
        if self._conn.sock is not None:
            self._conn.sock.settimeout(self._conn.timeout)
        return self._conn

    def _request(self, method: str, path: str, body: bytes, headers: dict[str, str],
                 timeout: float | None) -> tuple[int, http.client.HTTPMessage, bytes]:
        headers = {**headers, **self.endpoint.auth_headers()}
        for attempt in (0, 1):
            conn = self._connection(timeout)
            try:
                conn.request(method, path, body=body, headers=headers)
                response = conn.getresponse()
                return response.status, response.headers, response.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the server closed meanwhile: one fresh try.
                self.close()
                if attempt:
                    raise
            except BaseException:
                self.close()
                raise
        raise AssertionError("unreachable")

    def _log_once(self, key: str, msg: str, *args) -> None:
        if key not in self._logged:
            self._logged.add(key)
            log.error(msg, *args)
        else:
            log.debug(msg, *args)


def _error_text(answer: bytes) -> str:
    found = influx_error(answer)
    return found if found is not None else answer.decode("utf-8", "replace").strip()[:500]


class InfluxV2Writer:
    """The v2 write API (/api/v2/write, org + bucket + token) through influxdb-client, synchronous."""

    format = "line"

    def __init__(self, url: StoreURL, credentials: Credentials, timeout_seconds: float = 10.0,
                 ca_file: Path | None = None, use_gzip: bool = True) -> None:
        if url.kind != "influxdb2":
            raise ValueError(f"{url} is not an InfluxDB v2 URL")
        if not credentials.token:
            raise ValueError("the v2 write API needs a token: set FLEETWISE_INFLUXDB_TOKEN or "
                             "FLEETWISE_INFLUXDB_TOKEN_FILE")
        from influxdb_client import InfluxDBClient  # heavy-ish: only when a v2 store is configured
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.url = url
        self.bucket, self.org = url.database, url.org
        self.client = InfluxDBClient(url=url.base_url, token=credentials.token, org=url.org,
                                     timeout=int(timeout_seconds * 1000), verify_ssl=True,
                                     ssl_ca_cert=str(ca_file) if ca_file else None, enable_gzip=use_gzip)
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)

    def send(self, payload: bytes, timeout: float | None = None) -> SendResult:
        from influxdb_client.client.write_api import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self.write_api.write(bucket=self.bucket, org=self.org, record=payload, write_precision=WritePrecision.NS)
        except ApiException as e:
            body = (e.body or "").encode() if isinstance(e.body, str) else (e.body or b"")
            status = int(e.status or 0)
            if not is_influx_answer(e.headers, body):
                return SendResult(Outcome.RETRY, describe_foreign(status, e.headers, body), status)
            message = _error_text(body)
            if status in (400, 413, 422):
                return SendResult(Outcome.REJECTED, f"HTTP {status}: {message}", status)
            return SendResult(Outcome.RETRY, f"HTTP {status}: {message}", status)
        except Exception as e:  # urllib3 connection errors and timeouts: the batch stays
            return SendResult(Outcome.RETRY, f"{self.url}: {type(e).__name__}")
        return OK

    def close(self) -> None:
        self.write_api.close()
        self.client.close()
