"""Optional HTTP basic auth for a dashboard exposed without a reverse proxy in front.

Credentials come from the environment, as every fleetwise secret does (agents.stores.secrets): the user from
FLEETWISE_DASHBOARD_USER, the password from FLEETWISE_DASHBOARD_PASSWORD or from the file named by
FLEETWISE_DASHBOARD_PASSWORD_FILE (systemd credentials, Kubernetes secrets). Never from argv, never logged.
Without both, no auth (the server binds 127.0.0.1 by default).
"""

from __future__ import annotations

import base64
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

from agents.stores.secrets import SecretError, read_secret

USER_ENV = "FLEETWISE_DASHBOARD_USER"
PASSWORD_ENV = "FLEETWISE_DASHBOARD_PASSWORD"
REALM = "fleetwise"


@dataclass(frozen=True)
class BasicAuth:
    user: str
    password: str

    def __repr__(self) -> str:  # keeps the password out of tracebacks and debug logs
        return f"BasicAuth(user={self.user!r}, password='***')"

    def allows(self, header: str | None) -> bool:
        """Whether an Authorization header carries these credentials (compared in constant time)."""
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8").partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        ok_user = hmac.compare_digest(user.encode(), self.user.encode())
        ok_password = hmac.compare_digest(password.encode(), self.password.encode())
        return ok_user and ok_password


def from_env(env: Mapping[str, str] | None = None) -> BasicAuth | None:
    """BasicAuth from the environment, None when neither user nor password is set; SecretError (one line,
    naming the variable, never the value) when only one of them is, or the password file cannot be read."""
    import os

    env = os.environ if env is None else env
    user = env.get(USER_ENV, "")
    password = read_secret(PASSWORD_ENV, env)
    if not user and not password:
        return None
    if not user:
        raise SecretError(f"{PASSWORD_ENV}(_FILE) is set but {USER_ENV} is not: set both for basic auth")
    if not password:
        raise SecretError(f"{USER_ENV} is set but neither {PASSWORD_ENV} nor {PASSWORD_ENV}_FILE is: set both "
                          "for basic auth")
    return BasicAuth(user, password)


def protect(server, auth: BasicAuth) -> None:
    """Every request to the Flask server needs the credentials (the page, its scripts and every callback)."""
    from flask import Response, request

    @server.before_request
    def _check():
        if auth.allows(request.headers.get("Authorization")):
            return None
        return Response("authentication required\n", 401, {"WWW-Authenticate": f'Basic realm="{REALM}"'})
