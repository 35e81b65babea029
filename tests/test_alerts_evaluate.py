"""One evaluation of an expression over the embedded store: tag matchers (= pushed into the store's query,
!= after it), counter resets, rate, aggregation, and measurements the store does not hold."""

from __future__ import annotations

import pandas as pd
import pytest

from agents.points import Point
from agents.query import open_reader
from agents.stores.writers import open_writer
from analyzer.alerts.evaluate import evaluate
from analyzer.alerts.expr import parse

T0 = pd.Timestamp("2026-11-20T00:00:00Z")
MIN = pd.Timedelta(minutes=1)


def gpu(host: str, index: str, vendor: str, minute: int, **fields) -> Point:
    return Point("gpu", {"host": host, "gpu": index, "uuid": f"{host}-{index}", "vendor": vendor, "model": "m"},
                 fields, (T0 + minute * MIN).value)


@pytest.fixture(scope="module")
def reader(tmp_path_factory):
    store = f"embedded:{tmp_path_factory.mktemp('eval') / 'store'}"
    points = []
    for minute in range(11):
        points += [gpu("n1", "0", "nvidia", minute, temperature_celsius=95.0),
                   gpu("n1", "1", "amd", minute, temperature_celsius=95.0),
                   gpu("n2", "0", "amd", minute, temperature_celsius=60.0)]
    # n1 GPU 0's ECC counter: 10, 12, then the driver reloads (reset to 0) and it counts 3, 5
    for minute, count in zip((6, 7, 8, 9), (10, 12, 3, 5), strict=True):
        points.append(gpu("n1", "0", "nvidia", minute, ecc_corrected_errors=count))
    # n2 GPU 0's: 100 -> 160 over 8 minutes, no reset
    for minute, count in ((2, 100), (10, 160)):
        points.append(gpu("n2", "0", "amd", minute, ecc_corrected_errors=count))
    sink = open_writer(store)
    sink.write(points)
    sink.close()
    with open_reader(store) as r:
        yield r


def fired(reader, text: str, at: int = 10) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value for s in evaluate(reader, parse(text), T0 + at * MIN)}


def key(host: str, index: str, vendor: str) -> tuple:
    return tuple(sorted({"host": host, "gpu": index, "uuid": f"{host}-{index}", "vendor": vendor,
                         "model": "m"}.items()))


def test_tag_matchers(reader):
    assert fired(reader, 'gpu.temperature_celsius{vendor="amd"} > 90') == {key("n1", "1", "amd"): 95.0}
    assert fired(reader, 'gpu.temperature_celsius{vendor!="amd"} > 90') == {key("n1", "0", "nvidia"): 95.0}
    assert fired(reader, 'gpu.temperature_celsius{vendor="intel"} > 0') == {}


def test_increase_after_a_reset_is_what_was_counted_since_and_never_negative(reader):
    got = fired(reader, "increase(gpu.ecc_corrected_errors[10m]) >= 0")
    # n1: last 5 < first 10, a reset: 5 counted since; n2: 160 - 100
    assert got == {key("n1", "0", "nvidia"): 5.0, key("n2", "0", "amd"): 60.0}
    # rate: the increase over the window's length (600 s)
    assert fired(reader, "rate(gpu.ecc_corrected_errors[10m]) > 0.05") == {key("n2", "0", "amd"): 0.1}
    # one value in the window is no increase at all
    assert fired(reader, "increase(gpu.ecc_corrected_errors[1m]) >= 0", at=10) == {}


def test_aggregation_and_and(reader):
    assert fired(reader, "count by (host) (gpu.temperature_celsius) > 1") == {(("host", "n1"),): 2.0}
    assert fired(reader, "max by (vendor) (gpu.temperature_celsius) > 90 and "
                         "min by (vendor) (gpu.temperature_celsius) < 70") == {(("vendor", "amd"),): 95.0}


def test_a_measurement_the_store_never_saw_gives_nothing(reader):
    assert fired(reader, "filesystem.used_ratio > 0.9") == {}
    assert fired(reader, "min by (host) (time_since(agent.last_success_timestamp_seconds[1d])) > 30") == {}
