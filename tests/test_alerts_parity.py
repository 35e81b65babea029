"""The built-in evaluator agrees with Prometheus on every promtool unit test of the default pack: the input
series of tests/fixtures/alerts/promtool_tests.yaml are written to the embedded store as the agent's points
would be (metric names and labels mapped back to the schema), the evaluator steps through them a minute at a
time, and at each eval_time the alerts firing must be the ones promtool expects, with the same summaries."""

from __future__ import annotations

import re
from collections import defaultdict

import pandas as pd
import pytest
import yaml

from agents import schema
from agents.points import Point
from agents.query import open_reader
from agents.schema import Kind
from agents.stores.writers import open_writer
from analyzer.alerts.engine import Evaluator
from analyzer.alerts.rules import RuleSet, load_rules
from analyzer.alerts.state import StateDir
from tests.test_alerts_export import PROMTOOL_TESTS

MINUTE_NS = 60 * 10**9
_SERIES = re.compile(r"^(\w+)\{(.*)\}$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def prometheus_names() -> dict[str, tuple[str, str | None]]:
    """/metrics name -> (measurement, field); an info metric -> (measurement, None)."""
    out = {}
    for m in schema.MEASUREMENTS.values():
        for name, f in m.fields.items():
            if f.kind is Kind.INFO:
                out[m.info_name if m.name.endswith("_info") else m.info_name + "_info"] = (m.name, None)
            elif f.exposed and not f.labels:
                out[m.prometheus_name(name)] = (m.name, name)
    return out


def expand(values: str) -> list[float | None]:
    """promtool's expanding notation: 'a+bxn' (n+1 values), 'axn', '_xn' (n gaps), plain values."""
    out: list[float | None] = []
    for tok in values.split():
        m = re.match(r"^(_|-?[\d.]+)(?:([+-][\d.]+))?x(\d+)$", tok)
        if m is None:
            out.append(None if tok == "_" else float(tok))
        elif m.group(1) == "_":
            out += [None] * int(m.group(3))
        else:
            a, b, n = float(m.group(1)), float(m.group(2) or 0), int(m.group(3))
            out += [a + b * i for i in range(n + 1)]
    return out


def to_points(input_series: list[dict]) -> list[Point]:
    names = prometheus_names()
    merged: dict[tuple, dict] = defaultdict(dict)
    for s in input_series:
        metric, body = _SERIES.match(s["series"]).groups()
        labels = dict(_LABEL.findall(body))
        measurement, field = names[metric]
        # a scrape's labels back to the agent's tags: instance is the host, exported_job the job tag
        tags = {"host": labels.pop("instance")}
        labels.pop("job")
        if "exported_job" in labels:
            tags["job"] = labels.pop("exported_job")
        m = schema.MEASUREMENTS[measurement]
        info = {k: v for k, v in labels.items() if k not in m.tags}
        tags.update({k: v for k, v in labels.items() if k in m.tags})
        for i, v in enumerate(expand(s["values"])):
            if v is None:
                continue
            key = (measurement, tuple(sorted(tags.items())), i * MINUTE_NS)
            merged[key].update(info if field is None else {field: v})
    return [Point(meas, dict(tags), fields, t) for (meas, tags, t), fields in merged.items()]


def promtool_groups() -> list[tuple[str, dict]]:
    doc = yaml.safe_load(PROMTOOL_TESTS.read_text())
    return [(",".join(sorted({t["alertname"] for t in g["alert_rule_test"]})), g) for g in doc["tests"]]


@pytest.mark.parametrize("names, group", promtool_groups(), ids=[n for n, _ in promtool_groups()])
def test_evaluator_fires_what_promtool_expects(tmp_path, names, group):
    store = f"embedded:{tmp_path / 'store'}"
    sink = open_writer(store)
    try:
        sink.write(to_points(group["input_series"]))
    finally:
        sink.close()
    pack = load_rules()
    wanted = set(names.split(","))
    rules = RuleSet(pack.path, pack.interval, tuple(r for r in pack.rules if r.name in wanted))
    checks = defaultdict(list)
    for t in group["alert_rule_test"]:
        checks[int(pd.Timedelta(t["eval_time"]).total_seconds() // 60)].append(t)
    with open_reader(store) as reader:
        evaluator = Evaluator(rules, reader, StateDir(tmp_path / "alerts"))
        for minute in range(max(checks) + 1):
            evaluator.step(pd.Timestamp(minute * MINUTE_NS, tz="UTC"))
            for t in checks.get(minute, []):
                firing = [a for a in evaluator.state_dir.load().values()
                          if a.rule == t["alertname"] and a.state == "firing"]
                got = sorted((sorted(a.labels.items()), a.annotations["summary"]) for a in firing)
                want = []
                for e in t["exp_alerts"]:
                    labels = {{"instance": "host", "exported_job": "job"}.get(k, k): str(v)
                              for k, v in e["exp_labels"].items() if k != "job"}
                    labels["alertname"] = t["alertname"]
                    want.append((sorted(labels.items()), e["exp_annotations"]["summary"]))
                assert got == sorted(want), f"{t['alertname']} at {t['eval_time']}"
