"""How every writer and reader reaches one InfluxDB: address, TLS, credentials, and what counts as its answer.

One module for the agent's writer, `simulate`, `ingest` and the query API alike, so an HTTPS store with a
private CA (`[store] ca_file`) that can be written can also be read, and credentials are read one way
(agents.stores.secrets: environment or file, never argv, never logged).

InfluxDB marks every HTTP answer with `X-Influxdb-Version` (1.x, 2.x) or `X-Influxdb-Build`, and its errors
are JSON objects with an "error" (1.x) or "code"/"message" (2.x) member. An answer that has neither - a
proxy's 400 "HTTP request to an HTTPS server", a 200 HTML login page, a load balancer's 502 - says nothing
about the data, so callers must treat it as "the server is unavailable": keep the batch and retry, never
dead-letter it and never count it as written.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from agents.stores.secrets import Credentials, influx_credentials
from agents.stores.url import StoreURL

INFLUX_HEADERS = ("x-influxdb-version", "x-influxdb-build")


def ssl_context(ca_file: Path | None) -> ssl.SSLContext:
    """Verified by default; a private CA is added, verification is never turned off."""
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


@dataclass(frozen=True)
class Endpoint:
    """One InfluxDB HTTP endpoint: where it is, how to verify it, how to authenticate to it."""

    url: StoreURL
    credentials: Credentials
    timeout: float = 10.0
    ca_file: Path | None = None

    @property
    def https(self) -> bool:
        return self.url.base_url.startswith("https:")

    @property
    def host(self) -> str:
        return urlsplit(self.url.base_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url.base_url).port or 8086

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl_context(self.ca_file) if self.https else None

    def auth_headers(self) -> dict[str, str]:
        """Token auth (2.x/3.x v1 compatibility) or Basic auth (1.x); none without a secret or user."""
        c = self.credentials
        if c.token:
            return {"Authorization": f"Token {c.token}"}
        if c.user:
            raw = base64.b64encode(f"{c.user}:{c.password}".encode()).decode()
            return {"Authorization": f"Basic {raw}"}
        return {}


def endpoint(url: StoreURL, timeout: float = 10.0, ca_file: Path | None = None,
             credentials: Credentials | None = None) -> Endpoint:
    """The endpoint of an influxdb:// or influxdb2:// URL, with credentials from the environment or files."""
    return Endpoint(url, credentials or influx_credentials(url.user), timeout, ca_file)


def is_influx_answer(headers: Mapping[str, str] | None, body: bytes) -> bool:
    """True when an HTTP answer came from InfluxDB itself: its headers, or its JSON error object."""
    if headers is not None and any(headers.get(h) for h in INFLUX_HEADERS):
        return True
    return influx_error(body) is not None


def influx_error(body: bytes) -> str | None:
    """The message of an InfluxDB JSON error body ({"error": ...} or {"code": ..., "message": ...}), else None."""
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(doc, dict):
        return None
    if isinstance(doc.get("error"), str):
        return doc["error"]
    if isinstance(doc.get("code"), str) and isinstance(doc.get("message"), str):
        return doc["message"]
    return None


def describe_foreign(status: int, headers: Mapping[str, str] | None, body: bytes) -> str:
    """One safe line about an answer that is not InfluxDB's: status and content type, never the body (a
    login page or an echo of the request could carry anything)."""
    kind = (headers.get("content-type") if headers is not None else None) or "no content type"
    return (f"HTTP {status} ({kind.split(';')[0]}, {len(body)} bytes) is not an InfluxDB answer: a proxy or another "
            "server answers at this address (check http vs https and the port); the batch is kept")
