"""InfluxDB credentials from the environment or a file: never from argv, never logged.

FLEETWISE_INFLUXDB_PASSWORD / FLEETWISE_INFLUXDB_TOKEN hold the value; the *_FILE variants name a file
holding it (systemd credentials, Kubernetes secrets), read once at start with the trailing newline stripped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


class SecretError(ValueError):
    pass


@dataclass(frozen=True)
class Credentials:
    user: str = ""
    password: str = ""
    token: str = ""

    def __repr__(self) -> str:  # keeps secrets out of tracebacks and debug logs
        return f"Credentials(user={self.user!r}, password={'***' if self.password else ''!r}, " \
               f"token={'***' if self.token else ''!r})"

    @property
    def any(self) -> bool:
        return bool(self.password or self.token)


def read_secret(name: str, env: Mapping[str, str] | None = None) -> str:
    """The value of NAME, or the content of the file named by NAME_FILE, or ''."""
    env = os.environ if env is None else env
    if env.get(name):
        return env[name]
    path = env.get(f"{name}_FILE")
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().rstrip("\r\n")
    except OSError as e:
        # The path is not secret; the content is.
        raise SecretError(f"{name}_FILE={path}: {e.strerror or e}") from None


def influx_credentials(user: str = "", env: Mapping[str, str] | None = None) -> Credentials:
    return Credentials(user=user, password=read_secret("FLEETWISE_INFLUXDB_PASSWORD", env),
                       token=read_secret("FLEETWISE_INFLUXDB_TOKEN", env))
