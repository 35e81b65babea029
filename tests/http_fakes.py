"""A small HTTP(S) server on 127.0.0.1 for store tests: it answers like something that is not InfluxDB (a
proxy's error, a sign-in page), or forwards to a real influxd, passing its answers through headers and all."""

from __future__ import annotations

import http.client
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ForeignServer:
    """Answers every request with `answer` (status, content type, body), or forwards to `target` when set;
    over TLS with `tls` (a server context)."""

    def __init__(self, answer: tuple[int, str, bytes] | None = None, target: str | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.target = target
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests += 1
                if outer.target:
                    status, headers, data = forward(outer.target, self.command, self.path, self.headers, body)
                else:
                    status, content_type, data = outer.answer
                    headers = [("Content-Type", content_type)]
                self.send_response(status)
                for key, value in headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _any

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        scheme = "influxdbs" if tls is not None else "influxdb"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def forward(target: str, method: str, path: str, headers, body: bytes):
    parts = urllib.parse.urlsplit(target)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.request(method, path, body=body, headers={k: v for k, v in headers.items()
                                                       if k.lower() not in ("host", "connection")})
        answer = conn.getresponse()
        data = answer.read()
        keep = [(k, v) for k, v in answer.getheaders()
                if k.lower() not in ("content-length", "connection", "transfer-encoding")]
        return answer.status, keep, data
    finally:
        conn.close()
