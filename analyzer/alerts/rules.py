"""Alert rule files: YAML in, checked Rule objects out, all or nothing.

    interval: 10s            # the agents' collection interval (the unit of "3 intervals"); default 10s
    rules:
      - name: GpuAllocatedIdle                    # CamelCase, unique in the file
        severity: warning                         # critical, warning or info
        expr: job_gpu.utilization_ratio{allocation_source!="process"} < 0.05
        for: 60m                                  # how long it must hold before it fires (0s: at once)
        labels: {team: hpc}                       # optional, added to the alert's labels
        runbook: One line on what to do.
        summary: GPU {gpu} on {host} held by job {job} ran under 5% for an hour ({value})

A bad file raises RuleFileError whose message is one line naming the file, the rule and the problem;
nothing of such a file is returned."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from analyzer.alerts.expr import Expr, ExprError, parse, parse_duration

SEVERITIES = ("critical", "warning", "info")
DEFAULT_INTERVAL = 10.0  # the agent's default interval_seconds (agents/config.py)
_NAME = re.compile(r"^[A-Z][A-Za-z0-9]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABELS = frozenset({"alertname", "severity"})
_KEYS = {"name", "severity", "expr", "for", "labels", "runbook", "summary"}


class RuleFileError(ValueError):
    """A rule file that cannot be used: one line naming the file, the rule and the problem."""


@dataclass(frozen=True)
class Rule:
    name: str
    severity: str
    expr: Expr
    for_seconds: float
    runbook: str
    summary: str
    labels: dict[str, str] = field(default_factory=dict)

    def alert_labels(self, series: dict[str, str]) -> dict[str, str]:
        """The labels of one alert of this rule: the series' labels, the rule's, alertname and severity."""
        return {**series, **self.labels, "alertname": self.name, "severity": self.severity}

    def render_summary(self, series: dict[str, str], value: float) -> str:
        return self.summary.format_map({**series, **self.labels, "value": _short(value)})


@dataclass(frozen=True)
class RuleSet:
    path: str
    interval: float
    rules: tuple[Rule, ...]

    def by_name(self) -> dict[str, Rule]:
        return {r.name: r for r in self.rules}


def _short(value: float) -> str:
    return f"{value:.4g}"


def default_rules_path() -> Path:
    """The default rule pack shipped with fleetwise (analyzer/alerts/rules/default.yaml)."""
    return Path(str(resources.files("analyzer.alerts") / "rules" / "default.yaml"))


def load_rules(path: str | Path | None = None) -> RuleSet:
    """Load and check a rule file (default: the shipped pack). Raises RuleFileError on any problem."""
    import yaml

    path = Path(path) if path is not None else default_rules_path()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RuleFileError(f"{path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise RuleFileError(f"{path}: not UTF-8 text") from None
    try:
        doc = yaml.load(text, Loader=_strict_loader())  # a SafeLoader subclass: no arbitrary objects
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RuleFileError(f"{path}: not valid YAML{where}: {problem}") from None
    return parse_rules(doc, str(path))


def _strict_loader():
    """PyYAML's SafeLoader, refusing a key given twice in one mapping (plain PyYAML keeps the last one
    silently: a rule with two `expr:` lines would run the second without a word)."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return loader.construct_mapping(node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    return StrictLoader


def parse_rules(doc, source: str) -> RuleSet:
    """Check a parsed rule document; source names it in messages."""
    if not isinstance(doc, dict) or not isinstance(doc.get("rules"), list):
        raise RuleFileError(f"{source}: expected a mapping with a 'rules' list")
    unknown = set(doc) - {"rules", "interval"}
    if unknown:
        raise RuleFileError(f"{source}: unknown top-level key {sorted(unknown)[0]!r} (use rules, interval)")
    try:
        interval = parse_duration(str(doc.get("interval", "10s")))
    except ValueError as e:
        raise RuleFileError(f"{source}: interval: {e}") from None
    rules, seen = [], set()
    for i, raw in enumerate(doc["rules"], 1):
        name = raw.get("name") if isinstance(raw, dict) else None
        where = f"{source}: rule {name!r}" if isinstance(name, str) else f"{source}: rule #{i}"
        try:
            rule = _rule(raw, interval)
        except (ExprError, ValueError) as e:
            raise RuleFileError(f"{where}: {' '.join(str(e).split())}") from None
        if rule.name in seen:
            raise RuleFileError(f"{where}: duplicate rule name")
        seen.add(rule.name)
        rules.append(rule)
    if not rules:
        raise RuleFileError(f"{source}: no rules")
    return RuleSet(source, interval, tuple(rules))


def _rule(raw, interval: float) -> Rule:
    if not isinstance(raw, dict):
        raise ValueError("a rule is a mapping of name, severity, expr, for, labels, runbook, summary")
    extra = set(raw) - _KEYS
    if extra:
        raise ValueError(f"unknown key {sorted(extra)[0]!r}")
    for key in ("name", "severity", "expr", "for", "runbook", "summary"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            raise ValueError(f"{key}: missing or not a string")
    name = raw["name"]
    if not _NAME.match(name):
        raise ValueError("name: use CamelCase letters and digits (it becomes the alertname)")
    if raw["severity"] not in SEVERITIES:
        raise ValueError(f"severity {raw['severity']!r}: use one of {', '.join(SEVERITIES)}")
    for_text = raw["for"].strip()
    try:
        for_seconds = 0.0 if for_text in ("0", "0s") else parse_duration(for_text)
    except ValueError as e:
        raise ValueError(f"for: {e}") from None
    try:
        expr = parse(raw["expr"], interval)
    except ExprError as e:
        raise ExprError(f"bad expression {raw['expr']!r}: {e}") from None
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict):
        raise ValueError("labels: a mapping of name: value")
    for k, v in labels.items():
        if not isinstance(k, str) or not _LABEL.match(k) or k in _RESERVED_LABELS:
            raise ValueError(f"labels: bad or reserved label name {k!r}")
        if not isinstance(v, str | int | float) or isinstance(v, bool):
            raise ValueError(f"labels: {k}: give a string")
        if k in expr.labels:
            raise ValueError(f"labels: {k!r} is already a label of the series")
    labels = {k: str(v) for k, v in labels.items()}
    if "\n" in raw["runbook"].strip():
        raise ValueError("runbook: one line")
    summary = raw["summary"].strip()
    known = {*expr.labels, *labels, "value"}
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(summary) if f is not None]
    except ValueError as e:
        raise ValueError(f"summary: {e}") from None
    for f in fields:
        if f not in known:
            raise ValueError(f"summary: {{{f}}} is not a label of this alert (known: {', '.join(sorted(known))})")
    return Rule(name, raw["severity"], expr, for_seconds, raw["runbook"].strip(), summary, labels)
