"""The configuration file: TOML, validated, with defaults for everything and FLEETWISE_* overrides.

Environment overrides use double underscores between levels, e.g.
FLEETWISE_AGENT__INTERVAL_SECONDS=5 or FLEETWISE_COLLECTORS__CPU__PER_CORE=true. Values are read as
TOML values when they parse as one (numbers, booleans, arrays) and as strings otherwise.
Secrets are never config values: they come from the environment or a file (see docs/configuration.md).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from agents import collectors
from agents.config_recommend import RecommendSettings

ENV_PREFIX = "FLEETWISE_"


class ConfigError(Exception):
    """A bad configuration: names the source (file or environment variable), the key and the problem."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}" if key else f"{source}: {problem}")


def parse_listen(value: str) -> tuple[str, int]:
    """'HOST:PORT' or ':PORT' (which means 127.0.0.1, never all interfaces) -> (host, port)."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"expected HOST:PORT, got {value!r}")
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


class AgentSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval_seconds: float = Field(10.0, gt=0, description="Seconds between collections.")
    jitter_seconds: float = Field(
        1.0, ge=0, description="Random offset (fixed per process) added to the wall-clock-aligned ticks."
    )
    host: str = Field("", description="Value of the host tag; empty means the machine's hostname.")
    proc_root: Path = Field(Path("/proc"), description="Where procfs is (a container mounts the host's elsewhere).")
    sys_root: Path = Field(Path("/sys"), description="Where sysfs is.")
    collectors: list[str] = Field(
        default_factory=lambda: list(collectors.DEFAULT_ENABLED), description="Collectors to run, by name."
    )
    listen: str = Field("", description="HOST:PORT for Prometheus /metrics; empty disables it.")
    once_pause_seconds: float = Field(
        1.0, gt=0, le=60, description="With --once: pause between the two reads that rates need."
    )

    @field_validator("collectors")
    @classmethod
    def _known_collectors(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in collectors.REGISTRY]
        if unknown:
            raise ValueError(f"unknown collector(s) {unknown}; known: {', '.join(collectors.REGISTRY)}")
        return names

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        if value:
            parse_listen(value)
        return value


class StoreSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

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


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent: AgentSettings = Field(default_factory=AgentSettings)
    collectors: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Options per collector, e.g. [collectors.cpu] per_core = true."
    )
    store: StoreSettings = Field(default_factory=StoreSettings)
    recommend: RecommendSettings = Field(default_factory=RecommendSettings,
                                         description="The recommender's budgets and price table.")

    def collector_options(self, name: str) -> BaseModel:
        return collectors.load(name).Options.model_validate(self.collectors.get(name, {}))


def _env_overrides(env: Mapping[str, str]) -> list[tuple[str, tuple[str, ...], Any]]:
    out = []
    for var, raw in sorted(env.items()):
        if not var.startswith(ENV_PREFIX) or "__" not in var:
            continue
        path = tuple(p.lower() for p in var[len(ENV_PREFIX):].split("__"))
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        out.append((var, path, value))
    return out


def _set(tree: dict, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        node = tree.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"{part} is not a table")
        tree = node
    tree[path[-1]] = value


def first_error(exc: ValidationError, prefix: tuple = ()) -> tuple[str, str]:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in (*prefix, *err["loc"]))
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif "input" in err and not isinstance(err["input"], dict | list) and repr(err["input"]) not in message:
        message += f" (got {err['input']!r})"
    return key, message


def load_config(path: Path | str | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, override from the environment, and validate. Raises ConfigError on any problem."""
    env = os.environ if env is None else env
    source = str(path) if path else "defaults"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except OSError as e:
            raise ConfigError(str(path), "", e.strerror or str(e)) from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(str(path), "", f"not valid TOML: {e}") from None

    env_source: dict[tuple[str, ...], str] = {}
    for var, key_path, value in _env_overrides(env):
        try:
            _set(data, key_path, value)
        except ValueError as e:
            raise ConfigError(f"environment {var}", ".".join(key_path), str(e)) from None
        env_source[key_path] = var

    def blame(key: str) -> str:
        var = env_source.get(tuple(key.split(".")))
        return f"environment {var}" if var else source

    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        key, message = first_error(e)
        raise ConfigError(blame(key), key, message) from None

    for name, options in config.collectors.items():
        if name not in collectors.REGISTRY:
            known = ", ".join(collectors.REGISTRY)
            raise ConfigError(source, f"collectors.{name}", f"unknown collector; known: {known}")
        try:
            config.collector_options(name)
        except ValidationError as e:
            key, message = first_error(e, ("collectors", name))
            raise ConfigError(blame(key), key, message) from None
        if not isinstance(options, dict):
            raise ConfigError(source, f"collectors.{name}", "must be a table")
    return config
