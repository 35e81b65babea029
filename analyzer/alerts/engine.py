"""`fleetwise alerts run`: evaluate a rule set against a store over time, with Prometheus' alert life
cycle (pending until the for-duration has passed, then firing, then resolved), one notice per change
(no duplicate while an alert keeps firing), and the state kept in a state directory across restarts."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from agents.query import QueryError, Reader
from analyzer.alerts.evaluate import LOOKBACK_SECONDS, evaluate
from analyzer.alerts.notify import Webhook, WebhookError, log_notice, payload
from analyzer.alerts.rules import Rule, RuleSet
from analyzer.alerts.state import Alert, StateDir, fingerprint

log = logging.getLogger("fleetwise.alerts")


@dataclass
class Outcome:
    """What one evaluation did."""

    fired: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    failed_rules: list[str] = field(default_factory=list)
    sent: int = 0
    send_error: str = ""

    @property
    def ok(self) -> bool:
        return not self.failed_rules and not self.send_error


class Evaluator:
    def __init__(self, rules: RuleSet, reader: Reader, state_dir: StateDir, webhook: Webhook | None = None,
                 external_url: str = "http://127.0.0.1:8050", resend_seconds: float = 0.0,
                 lookback: float = LOOKBACK_SECONDS) -> None:
        self.rules = rules
        self.reader = reader
        self.state_dir = state_dir
        self.webhook = webhook
        self.external_url = external_url
        self.resend_seconds = resend_seconds
        self.lookback = lookback

    def step(self, now) -> Outcome:
        """Evaluate every rule at `now` (a UTC pandas Timestamp), update and save the state, notify."""
        t = now.timestamp()
        alerts = self.state_dir.load()
        out = Outcome()
        names = {r.name for r in self.rules.rules}
        errors: dict[str, list[str]] = {}
        for rule in self.rules.rules:
            try:
                samples = evaluate(self.reader, rule.expr, now, self.lookback)
            except (QueryError, OSError, ValueError) as e:
                # a failed query says nothing about the alerts: keep them as they are, neither fire nor resolve
                reason = " ".join(str(e).split())
                log.debug("rule %s: cannot evaluate: %s", rule.name, reason)
                errors.setdefault(reason, []).append(rule.name)
                out.failed_rules.append(rule.name)
                continue
            self._apply(rule, samples, alerts, t, out)
        for reason, failed in errors.items():  # one line per cause, not one per rule (a store that is down)
            log.error("%d rule(s) not evaluated (%s): %s", len(failed), ", ".join(failed), reason)
        for fp, a in list(alerts.items()):
            if a.rule not in names:  # a rule taken out of the file: its alerts end
                if a.state == "firing":
                    self._resolve(a, t, out)
                elif a.state == "pending":
                    del alerts[fp]
        self.state_dir.append_history([_event(a) for a in out.fired + out.resolved])
        self.state_dir.save(alerts)
        for a in out.fired + out.resolved:
            log_notice(a)
        self._deliver(alerts, t, out)
        # resolved alerts whose notice went out are history only now
        for fp in [fp for fp, a in alerts.items() if a.state == "resolved" and not a.notify]:
            del alerts[fp]
        self.state_dir.save(alerts)
        return out

    def _apply(self, rule: Rule, samples, alerts: dict[str, Alert], t: float, out: Outcome) -> None:
        seen = set()
        for s in samples:
            labels = rule.alert_labels(s.labels)
            fp = fingerprint(labels)
            seen.add(fp)
            annotations = {"summary": rule.render_summary(s.labels, s.value), "runbook": rule.runbook}
            a = alerts.get(fp)
            if a is None or a.state == "resolved":
                a = alerts[fp] = Alert(rule.name, rule.severity, labels, annotations, s.value, "pending", t)
            # the summary follows the value, as Prometheus re-renders annotations each evaluation; a
            # change of value is not a new notice
            a.value, a.annotations = s.value, annotations
            if a.state == "pending" and t - a.active_since >= rule.for_seconds:
                a.state, a.starts_at, a.notify = "firing", t, "firing"
                out.fired.append(a)
        for fp, a in list(alerts.items()):
            if a.rule != rule.name or fp in seen:
                continue
            if a.state == "pending":
                del alerts[fp]
            elif a.state == "firing":
                self._resolve(a, t, out)

    @staticmethod
    def _resolve(a: Alert, t: float, out: Outcome) -> None:
        a.state, a.ends_at, a.notify = "resolved", t, "resolved"
        out.resolved.append(a)

    def _deliver(self, alerts: dict[str, Alert], t: float, out: Outcome) -> None:
        if self.webhook is None:
            for a in alerts.values():
                a.notify = ""
            return
        due = [a for a in alerts.values() if a.notify]
        if self.resend_seconds > 0:
            due += [a for a in alerts.values() if a.state == "firing" and not a.notify
                    and (a.last_sent is None or t - a.last_sent >= self.resend_seconds)]
        if not due:
            return
        try:
            self.webhook.post(payload(due, self.external_url, self.resend_seconds, t))
        except WebhookError as e:
            # kept in the state: the next evaluation sends them again
            out.send_error = str(e)
            log.error("%s; %d notice(s) kept for the next evaluation", e, len(due))
            return
        for a in due:
            a.notify, a.last_sent = "", t
        out.sent = len(due)


def _event(a: Alert) -> dict:
    return {"event": a.state, "fingerprint": fingerprint(a.labels), "rule": a.rule, "severity": a.severity,
            "labels": a.labels, "summary": a.annotations.get("summary", ""), "starts_at": a.starts_at,
            "ends_at": a.ends_at}
