"""Store URLs, the one way every command names a store (`--store URL` or [store] url).

- ``embedded:PATH``                                   the embedded Parquet store in directory PATH
- ``influxdb://[user@]host:port/db[?rp=RP]``          InfluxDB v1 API over HTTP (1.x, 2.x compat, 3.x)
- ``influxdbs://...``                                 the same over HTTPS (certificates verified)
- ``influxdb2://host:port/bucket?org=ORG``            the v2 write API (``influxdb2s://`` for HTTPS)
- ``prometheus://host:port[?step=15s]``               read-only: a Prometheus scraping node_exporter and
                                                      dcgm-exporter (``prometheuss://`` for HTTPS)
- ``influxdb://host:port/db?schema=telegraf``         read Telegraf's measurements (detected when absent)

Passwords and tokens are never part of the URL: they come from FLEETWISE_INFLUXDB_PASSWORD /
FLEETWISE_INFLUXDB_TOKEN or from the files named by FLEETWISE_INFLUXDB_PASSWORD_FILE /
FLEETWISE_INFLUXDB_TOKEN_FILE, so they never show in argv or in logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, urlsplit, urlunsplit

_DB_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
# Query parameters that carry credentials (InfluxDB 1.x reads u= and p=; proxies and clients use the others).
SECRET_PARAMS = frozenset({"p", "u", "password", "passwd", "pwd", "token", "auth", "authorization", "secret",
                           "apikey", "api_key", "access_token"})


class StoreURLError(ValueError):
    pass


@dataclass(frozen=True)
class StoreURL:
    kind: str  # "embedded", "influxdb" (v1 API) or "influxdb2" (v2 write API)
    path: Path | None = None  # embedded
    base_url: str = ""  # http(s)://host:port for InfluxDB
    database: str = ""  # v1 database, or v2 bucket
    retention_policy: str = ""
    org: str = ""
    user: str = ""
    params: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:  # never contains a secret
        if self.kind == "embedded":
            return f"embedded:{self.path}"
        if self.kind == "prometheus":
            return f"prometheus:{self.base_url}"
        return f"{self.kind}:{self.base_url}/{self.database}"


def redact(url: str) -> str:
    """The URL as it may be printed: a password in it and the values of credential parameters become ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(":" + parts.password + "@", ":***@", 1)
        query = "&".join(
            f"{k}=***" if k.lower() in SECRET_PARAMS else f"{k}={v}"
            for k, v in parse_qsl(parts.query, keep_blank_values=True))
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:  # an unparsable netloc (a bad port, a stray bracket): show nothing of it
        return url.split(":", 1)[0] + ":..."


def parse_store_url(url: str) -> StoreURL:
    """Parse and check a store URL. Every message shows the URL redacted: a secret is never printed back."""
    if url.startswith("embedded:"):
        path = url[len("embedded:"):]
        if not path:
            raise StoreURLError("embedded: needs a directory, e.g. embedded:/var/lib/fleetwise/store")
        try:
            expanded = Path(path).expanduser()
        except RuntimeError:  # pathlib's "Could not determine home directory"
            expanded = Path(path)
        if str(expanded).startswith("~"):
            user = path[1:].split("/", 1)[0]
            raise StoreURLError(f"embedded:{path}: cannot expand ~{user}: no such user")
        return StoreURL(kind="embedded", path=expanded)
    try:
        return _parse_influx_url(url)
    except ValueError as e:
        if isinstance(e, StoreURLError):
            raise
        raise StoreURLError(f"store URL {redact(url)!r}: {e}") from None


def _parse_influx_url(url: str) -> StoreURL:
    parts = urlsplit(url)
    if parts.scheme in ("prometheus", "prometheuss"):
        return _prometheus_url(url, parts)
    schemes = {"influxdb": ("influxdb", "http"), "influxdbs": ("influxdb", "https"),
               "influxdb2": ("influxdb2", "http"), "influxdb2s": ("influxdb2", "https")}
    if parts.scheme not in schemes:
        raise StoreURLError(
            f"unknown store URL {redact(url)!r}: expected embedded:PATH, influxdb://host:port/db, "
            "influxdb2://host:port/bucket or prometheus://host:port"
        )
    kind, http_scheme = schemes[parts.scheme]
    if parts.password is not None:
        raise StoreURLError(f"put no password in a store URL ({redact(url)!r}); set "
                            "FLEETWISE_INFLUXDB_PASSWORD(_FILE) or FLEETWISE_INFLUXDB_TOKEN(_FILE) instead")
    secrets = sorted(k for k in parse_qs(parts.query, keep_blank_values=True) if k.lower() in SECRET_PARAMS)
    if secrets:
        raise StoreURLError(f"put no credentials in a store URL's query ({', '.join(secrets)} in {redact(url)!r}); "
                            "the user goes before the host (influxdb://USER@host:port/db), the password or token in "
                            "FLEETWISE_INFLUXDB_PASSWORD(_FILE) / FLEETWISE_INFLUXDB_TOKEN(_FILE)")
    if not parts.hostname:
        raise StoreURLError(f"store URL {redact(url)!r} has no host")
    database = parts.path.strip("/")
    if not database or not _DB_NAME.match(database):
        raise StoreURLError(f"store URL {redact(url)!r}: database/bucket name must match {_DB_NAME.pattern}")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    port = parts.port or 8086
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    if kind == "influxdb2" and not query.get("org"):
        raise StoreURLError(f"store URL {redact(url)!r}: the v2 write API needs ?org=ORG")
    return StoreURL(kind=kind, base_url=f"{http_scheme}://{host}:{port}", database=database,
                    retention_policy=query.pop("rp", ""), org=query.pop("org", ""), user=parts.username or "",
                    params=query)


def _prometheus_url(url: str, parts) -> StoreURL:
    if parts.password or parts.username:
        raise StoreURLError("put no credentials in a store URL; set FLEETWISE_PROMETHEUS_TOKEN(_FILE) instead")
    if not parts.hostname:
        raise StoreURLError(f"store URL {redact(url)!r} has no host")
    if parts.path.strip("/"):
        raise StoreURLError(f"store URL {redact(url)!r}: a Prometheus URL names no database (prometheus://host:port)")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    http_scheme = "https" if parts.scheme == "prometheuss" else "http"
    return StoreURL(kind="prometheus", base_url=f"{http_scheme}://{host}:{parts.port or 9090}", params=query)
