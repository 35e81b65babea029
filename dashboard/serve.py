"""`fleetwise dashboard`: serve the app on 127.0.0.1 (by default) with a threaded WSGI server.

Behind a reverse proxy (TLS, single sign-on) keep --listen on 127.0.0.1; for direct exposure set basic auth
(dashboard.auth) and listen on a public address. docs/dashboard.md has both.
"""

from __future__ import annotations

import ipaddress
import logging
import threading

log = logging.getLogger(__name__)
DEFAULT_LISTEN = "127.0.0.1:8050"


def parse_listen(text: str) -> tuple[str, int]:
    """("127.0.0.1", 8050) from "127.0.0.1:8050" or "[::1]:8050"; ValueError naming the problem."""
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(f"--listen {text!r}: give HOST:PORT, e.g. {DEFAULT_LISTEN}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"--listen {text!r}: {host!r} is not an IP address (or localhost)") from None
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"--listen {text!r}: port must be 0-65535")
    return host, int(port)


def make_server(app, host: str, port: int):
    """A threaded werkzeug server for the app (port 0 picks a free one: `.server_port`)."""
    from werkzeug.serving import make_server as _make

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request (and no query strings) in logs
    return _make(host, port, app.server, threaded=True)


def serve_in_thread(app, host: str = "127.0.0.1", port: int = 0):
    """Start serving in a daemon thread; returns the server (`.shutdown()` stops it) - tests and the demo."""
    server = make_server(app, host, port)
    threading.Thread(target=server.serve_forever, name="dashboard", daemon=True).start()
    return server


def url_of(server) -> str:
    host = server.host if ":" not in server.host else f"[{server.host}]"
    return f"http://{host}:{server.server_port}/"


def run(store: str, state_dir, listen: str = DEFAULT_LISTEN, settings=None, alerts_dir=None) -> int:
    """Serve until Ctrl-C. Raises ValueError (bad --listen), SecretError (bad credentials), OSError (port)."""
    from dashboard.app import create_app
    from dashboard.auth import from_env
    from dashboard.context import Context

    host, port = parse_listen(listen)
    auth = from_env()
    ctx = Context(store, state_dir, alerts_dir, settings)
    ctx.reader().measurements()  # an unreachable store is said now, in one line, not in every callback
    app = create_app(ctx, auth=auth)
    server = make_server(app, host, port)
    print(f"fleetwise dashboard on {url_of(server)} over {store} and {state_dir}"
          f"{' (basic auth on)' if auth else ''}; Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
