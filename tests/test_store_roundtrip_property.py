"""Arbitrary names and values round-trip unchanged through both stores; what line protocol cannot
carry is refused (InvalidPoint) before anything is written."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from agents.points import InvalidPoint, Point
from agents.query import open_reader
from agents.stores.embedded import EmbeddedWriter
from tests.store_helpers import create_database, write_points

T = 1_795_651_200 * 10**9
_ids = itertools.count()

# Printable text with the characters line protocol escapes, quotes, backslashes and non-ASCII.
_text = st.text(st.one_of(st.sampled_from(list(' ,="\'\\=#ü€中\U0001f600')),
                          st.characters(blacklist_categories=("Cs", "Cc"))), min_size=1, max_size=12)
_name = _text.filter(lambda s: not s.endswith("\\") and s.lower() != "time")
_no_escaped_backslash = _name.filter(lambda s: not any("\\" + c in s for c in " ,="))
_values = st.one_of(st.floats(allow_nan=False, allow_infinity=False, width=64),
                    st.integers(-(2**53), 2**53), st.booleans(), st.text(max_size=12))


@st.composite
def points(draw):
    # names that differ only in case are refused by the embedded store (test_names_differing_only_in_case)
    tag_keys = draw(st.lists(_name, min_size=1, max_size=3, unique_by=str.lower))
    folded_tags = {k.lower() for k in tag_keys}
    field_keys = draw(st.lists(_no_escaped_backslash.filter(lambda k: k.lower() not in folded_tags), min_size=1,
                               max_size=3, unique_by=str.lower))
    tags = {k: draw(_name) for k in tag_keys}
    fields = {k: draw(_values) for k in field_keys}
    measurement = draw(_no_escaped_backslash.filter(lambda s: not s.startswith("#")))
    return measurement, tags, fields


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    from tests.services import influxd

    root = tmp_path_factory.mktemp("embedded")
    with influxd(tmp_path_factory.mktemp("influxd")) as server:
        create_database(server.url, "prop")
        yield {"url": server.url, "writer": EmbeddedWriter(root),
               "readers": [open_reader(server.url.replace("http://", "influxdb://") + "/prop"),
                           open_reader(f"embedded:{root}")]}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(points())
@example(("m#", {"k": "a\\ b", "k\\,": "x\\=y"}, {"f\\g": "s\\", "f\"": 1}))
@example(("m m,=", {"a b,c=d": "\\\\x", "\"q\"": "'"}, {"é": True, "中 文": -2.5e-300}))
def test_names_and_values_round_trip(both, example):
    measurement, tags, fields = example
    # One measurement per example: names never collide across examples.
    measurement = f"{measurement}{next(_ids)}"
    t = T + next(_ids) * 10**9
    point = Point(measurement, tags, fields, t)
    try:
        point.to_line()
    except InvalidPoint:  # refused by both stores, before anything is written
        with pytest.raises(InvalidPoint):
            both["writer"].write([point])
        assert measurement not in both["readers"][1].measurements()
        return
    write_points(both["url"], "prop", [point])
    both["writer"].write([point])
    frames = []
    for reader in both["readers"]:
        assert measurement in reader.measurements()
        for k, v in tags.items():
            assert reader.tag_values(measurement, k) == [v]
        df = reader.frame(measurement, list(fields), pd.Timestamp(t, tz="UTC"), pd.Timestamp(t + 1, tz="UTC"),
                          by=list(tags))
        assert len(df) == 1
        row = df.iloc[0]
        assert row["time"] == pd.Timestamp(t, tz="UTC")
        assert {k: row[k] for k in tags} == tags
        for k, v in fields.items():
            expect = float(v) if isinstance(v, int) and not isinstance(v, bool) else v
            assert row[k] == expect, (k, v, row[k])
            assert isinstance(row[k], str) == isinstance(v, str), (k, v, row[k])
        frames.append(df)
    pd.testing.assert_frame_equal(frames[0], frames[1])


@pytest.mark.parametrize("tags,fields,match", [
    ({"host": "a\nb"}, {"v": 1.0}, "newline"),
    ({"host": "ab\\"}, {"v": 1.0}, "backslash"),
    ({"ho\rst": "a"}, {"v": 1.0}, "newline"),
    ({"host": "a"}, {"v\n": 1.0}, "newline"),
    ({"host": "a"}, {}, "no field"),
    ({"host": "a"}, {"f\\ g": 1.0}, "backslash before"),
    ({"host": "a"}, {"f\\=g": 1.0}, "backslash before"),
    ({"host": "a", "#": "#"}, {"v": 1.0, "#measurement": 1.0}, None),  # a '#' only matters at line start
    ({"host": "a"}, {"v": float("inf")}, "no field"),
])
def test_what_line_protocol_cannot_carry_is_refused(tmp_path, tags, fields, match):
    point = Point("m", tags, fields, T)
    if match is None:  # a control case: the same shape with a measurement starting with '#' is refused
        point, match = Point("#m", tags, fields, T), "comment"
    with pytest.raises(InvalidPoint, match=match):
        point.to_line()
    with pytest.raises(InvalidPoint, match=match):
        EmbeddedWriter(tmp_path).write([point])
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize("points,refused", [
    ([Point("m", {"Host": "a"}, {"host": 1.0}, T)], {0: "'host' and 'Host' differ only in case"}),
    ([Point("m", {"h": "a"}, {"TRUE": 1.0, "tRUE": 2.0}, T)], {0: "'tRUE' and 'TRUE' differ only in case"}),
    ([Point("m", {"TIME": "a"}, {"v": 1.0}, T)], {0: "'time' and 'TIME' differ only in case"}),
    # across points of one measurement: the first spelling stays, a later one is refused, other measurements free
    ([Point("m", {"Host": "a"}, {"v": 1.0}, T), Point("m", {"host": "b"}, {"v": 2.0}, T),
      Point("n", {"host": "b"}, {"v": 2.0}, T)], {1: "'host' and 'Host' differ only in case"}),
])
def test_names_differing_only_in_case(tmp_path, points, refused):
    # InfluxDB keeps them apart, but DuckDB resolves column names without regard to case, so the embedded
    # store refuses the second spelling point by point (the shipper dead-letters it) instead of storing an
    # ambiguous column.
    from agents.stores.embedded_rows import check_points

    problems = check_points(points)
    assert {i: p.split(": ", 1)[1] for i, p in problems.items()} == refused
    with pytest.raises(InvalidPoint, match="differ only in case"):
        EmbeddedWriter(tmp_path).write(points)
    good = [p for i, p in enumerate(points) if i not in refused]
    if good:
        EmbeddedWriter(tmp_path).write(good)
        reader = open_reader(f"embedded:{tmp_path}")
        assert sorted(reader.measurements()) == sorted({p.measurement for p in good})
