"""Alert notices: to the log, and to an Alertmanager-compatible webhook as Alertmanager's v2 API takes
them (POST /api/v2/alerts: a JSON list of {labels, annotations, startsAt, endsAt, generatorURL}).

A webhook URL may carry credentials (https://user:pass@host/..., ?token=...): they are sent as HTTP Basic
auth or left in the query, and every log line shows the URL redacted."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from agents.stores.connection import ssl_context
from agents.stores.url import redact
from analyzer.alerts.state import Alert

log = logging.getLogger("fleetwise.alerts")


class WebhookError(RuntimeError):
    pass


def iso(ts: float | None) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if ts is not None else ""


def payload(alerts: list[Alert], external_url: str, resend_seconds: float = 0.0, now: float = 0.0) -> list[dict]:
    """Alertmanager v2 postable alerts. A firing alert carries endsAt only when it is resent
    periodically (now + 4 resend periods, as Prometheus does), so an Alertmanager keeps it open between
    resends; otherwise Alertmanager's resolve_timeout applies."""
    out = []
    for a in alerts:
        item = {"labels": dict(a.labels), "annotations": dict(a.annotations), "startsAt": iso(a.starts_at),
                "generatorURL": f"{external_url.rstrip('/')}/alerts?rule={urllib.parse.quote(a.rule)}"}
        if a.state == "resolved":
            item["endsAt"] = iso(a.ends_at)
        elif resend_seconds > 0:
            item["endsAt"] = iso(now + 4 * resend_seconds)
        out.append(item)
    return out


class Webhook:
    def __init__(self, url: str, timeout: float = 10.0, ca_file: Path | None = None) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"webhook {redact(url)}: give an http:// or https:// URL")
        self.shown = redact(url)
        self.headers = {"Content-Type": "application/json", "User-Agent": "fleetwise-alerts"}
        if parts.username is not None:
            cred = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            self.headers["Authorization"] = "Basic " + base64.b64encode(cred.encode()).decode()
            netloc = parts.hostname + (f":{parts.port}" if parts.port else "")
            if ":" in parts.hostname:
                netloc = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
            url = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        self._url = url
        self.timeout = timeout
        self._ssl = ssl_context(ca_file) if parts.scheme == "https" else None

    def __repr__(self) -> str:  # never the credentials
        return f"Webhook({self.shown})"

    def post(self, body: list[dict]) -> None:
        data = json.dumps(body).encode()
        req = urllib.request.Request(self._url, data=data, headers=self.headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as r:
                r.read()
        except urllib.error.HTTPError as e:
            raise WebhookError(f"webhook {self.shown} answered HTTP {e.code}") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise WebhookError(f"webhook {self.shown} unreachable: {reason}") from None


def log_notice(a: Alert) -> None:
    labels = ", ".join(f"{k}={v}" for k, v in sorted(a.labels.items()) if k not in ("alertname", "severity"))
    if a.state == "resolved":
        log.info("RESOLVED %s [%s] %s (%s)", a.rule, a.severity, a.annotations.get("summary", ""), labels)
    else:
        log.warning("FIRING %s [%s] %s (%s)", a.rule, a.severity, a.annotations.get("summary", ""), labels)
