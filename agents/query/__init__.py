"""One query API over InfluxDB and the embedded store: ``open_reader(url).frame(...)``.

See agents.query.base for the frame contract both backends honour.
"""

from __future__ import annotations

from agents.query.base import QueryError, Reader, parse_agg, parse_every
from agents.query.downsample import choose_every
from agents.stores.settings import StoreSettings
from agents.stores.url import StoreURL, parse_store_url


def open_reader(url: str | StoreURL, settings: StoreSettings | None = None) -> Reader:
    """A Reader for a store URL (embedded:PATH, influxdb(s)://host:port/db[?schema=telegraf] or
    prometheus(s)://host:port). InfluxDB is reached as the writers reach it (agents.stores.connection: same
    credentials, same `ca_file`)."""
    settings = settings or StoreSettings()
    parsed = parse_store_url(url) if isinstance(url, str) else url
    if parsed.kind == "embedded":
        from agents.query.embedded import EmbeddedReader

        return EmbeddedReader(parsed.path)
    if parsed.kind == "influxdb":
        from agents.query.influx import InfluxReader
        from agents.query.telegraf import with_schema

        return with_schema(InfluxReader(parsed, settings.query_timeout_seconds, settings.ca_file),
                           parsed.params.get("schema", ""))
    if parsed.kind == "prometheus":
        from agents.query.prometheus import PrometheusReader

        return PrometheusReader(parsed, ca_file=settings.ca_file)
    raise ValueError(
        f"{parsed}: querying needs the v1 /query endpoint (InfluxQL); InfluxDB 2.x and 3.x serve it too via a "
        "DBRP mapping, so name the store as influxdb://host:port/DB (influxdbs:// for HTTPS) to read from it")


__all__ = ["QueryError", "Reader", "choose_every", "open_reader", "parse_agg", "parse_every"]
