"""[store] settings: how every writer and reader reaches a store (agent, simulate, ingest, analyze alike).

They live in the stores layer so that writers and readers take them without importing the agent's
configuration module; agents.config embeds this model as its [store] table.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    url: str = Field("", description="embedded:PATH or influxdb://[user@]host:port/db; empty prints only.")
    spool_dir: Path | None = Field(
        None, description="Directory of the durable spool; unset: /var/lib/fleetwise/spool, or next to an "
        "embedded store (PATH.spool).")
    spool_max_bytes: int = Field(256 * 2**20, ge=4096, description="Bound of the spool; when full the oldest "
                                 "batches are dropped (and counted).")
    batch_max_points: int = Field(5000, gt=0, description="Most points sent in one request.")
    flush_interval_seconds: float = Field(10.0, gt=0, description="Longest a point waits in the spool before "
                                          "a batch smaller than batch_max_points is sent.")
    retry_base_seconds: float = Field(1.0, gt=0, description="First retry delay; doubles on each failure (jittered).")
    retry_max_seconds: float = Field(60.0, gt=0, description="Cap of the retry delay.")
    timeout_seconds: float = Field(10.0, gt=0, description="HTTP timeout of one write.")
    ca_file: Path | None = Field(None, description="Extra CA bundle for https stores; certificates are always "
                                 "verified.")
    gzip: bool = Field(True, description="Compress write bodies (Content-Encoding: gzip).")
    create_database: bool = Field(True, description="Run CREATE DATABASE when the database is missing and the "
                                  "credentials allow it.")
    give_up_seconds: float = Field(60.0, gt=0, description="Without a spool (`fleetwise ingest`, `simulate`): how "
                                   "long to keep retrying a batch the store does not take before failing (exit 1).")
    query_timeout_seconds: float = Field(120.0, gt=0, description="HTTP timeout of one query (analyze, dashboard).")
    shutdown_flush_seconds: float = Field(5.0, ge=0, description="On SIGTERM, how long to keep sending; the "
                                          "rest stays in the spool for the next start.")
    compact_interval_seconds: float = Field(3600.0, gt=0, description="Embedded store: how often the agent starts "
                                            "its maintenance child, which folds the pending batches into Parquet, "
                                            "merges each day's small files and applies retention.")
    compact_min_files: int = Field(16, ge=2, description="Embedded store: merge a day once it has this many files.")
    retention_days: float | None = Field(None, gt=0, description="Embedded store: delete days older than this; "
                                         "unset keeps everything.")

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        if value:
            from agents.stores.url import parse_store_url

            parse_store_url(value)
        return value
