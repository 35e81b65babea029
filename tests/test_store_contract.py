"""One suite, two stores: the same points written to a real influxd and to the embedded store must give
identical frames, measurement lists, tag values and time bounds."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from agents.points import Point
from agents.query import open_reader
from agents.stores.embedded import EmbeddedWriter
from tests.store_helpers import create_database, write_points

T0 = 1_795_651_200 * 10**9  # 2026-11-26T00:00:00Z
S = 10**9
HOSTS = {"a": "r1", "b": "r1", "c": "r2", "d": ""}  # d has no rack tag at all
# A tag value a filter must bind, never paste: quotes, backslashes, a semicolon and a statement after it.
ODD = 'x\\\'"; DROP MEASUREMENT ctest; --\\y'
UNSTORED = "a'; DROP MEASUREMENT ctest; --\\"  # line protocol cannot end a tag value with a backslash


def _points() -> list[Point]:
    pts = []
    for h, (host, rack) in enumerate(HOSTS.items()):
        for k in range(30):  # 5 minutes at 10 s; host offsets keep every timestamp distinct
            t = T0 + k * 10 * S + h * S
            if host == "b" and 2 * 60 * S <= t - T0 < 3 * 60 * S:
                continue  # a gap: b's minute 2 has no points
            fields = {"load": ((k * 7 + h * 13) % 17) / 4, "reqs": (k * 5 + h) % 11}
            if host == "a" and k < 12:
                fields["temp"] = 40.0 + k
            tags = {"host": host, "rack": rack}
            pts.append(Point("ctest", tags, fields, t))
    pts.append(Point("other", {"host": "z"}, {"v": 1.5}, T0 + 7 * S))
    pts.append(Point("other", {"host": "y"}, {"v": 2.5}, T0 + 86_400 * S + 9 * S))  # the next day
    pts.append(Point("other", {"host": ODD}, {"v": 3.5}, T0 + 8 * S))
    return pts


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    from tests.services import influxd

    points = _points()
    root = tmp_path_factory.mktemp("embedded")
    writer = EmbeddedWriter(root)
    writer.write(points[: len(points) // 2])  # several files per partition, as an agent writes them
    writer.write(points[len(points) // 2:])
    with influxd(tmp_path_factory.mktemp("influxd")) as server:
        create_database(server.url, "fw")
        write_points(server.url, "fw", points)
        influx = open_reader(server.url.replace("http://", "influxdb://") + "/fw")
        embedded = open_reader(f"embedded:{root}")
        yield {"influx": influx, "embedded": embedded}
        embedded.close()


START, END = T0, T0 + 5 * 60 * S
CASES = {
    "raw": dict(fields=["load", "reqs"], start=START, end=END),
    "raw_by_host": dict(fields=["load", "temp"], start=START, end=END, by=["host"]),
    "raw_sparse_field_by_rack_host": dict(fields=["temp"], start=START, end=END, by=["rack", "host"]),
    "raw_absent_tag": dict(fields=["reqs"], start=START, end=END, by=["nope", "host"]),
    **{f"{agg}_1m_by_host": dict(fields=["load", "reqs", "temp"], start=START, end=END, every="1m", by=["host"],
                                 agg=agg)
       for agg in ("mean", "max", "min", "last", "sum", "count", "p50", "p95", "p5")},
    "mean_by_rack_host": dict(fields=["load"], start=START, end=END, every="1m", by=["rack", "host"]),
    "last_no_by": dict(fields=["load", "reqs"], start=START, end=END, every="1m", agg="last"),
    "cut_window": dict(fields=["load"], start=T0 + 30 * S, end=T0 + 260 * S, every="1m", by=["host"], agg="max"),
    "int_field_sum_2m": dict(fields=["reqs"], start=START, end=END, every="2m", by=["rack"], agg="sum"),
    "nothing_there": dict(fields=["load"], start=T0 - 3600 * S, end=T0 - 60 * S, every="1m", by=["host"]),
    "across_days": dict(fields=["v"], start=T0, end=T0 + 2 * 86_400 * S, every="1h", by=["host"], measurement="other"),
    "tags_one_host": dict(fields=["load", "temp"], start=START, end=END, every="1m", by=["host"],
                          where_tags={"host": "a"}),
    "tags_two_hosts_raw": dict(fields=["load"], start=START, end=END, by=["host"], where_tags={"host": ["c", "a"]}),
    "tags_and": dict(fields=["load"], start=START, end=END, every="1m", by=["rack", "host"], agg="max",
                     where_tags={"rack": "r1", "host": ("b", "c")}),
    "tags_no_rack": dict(fields=["reqs"], start=START, end=END, every="2m", by=["host"], agg="sum",
                         where_tags={"rack": ""}),
    "tags_no_rack_or_r2": dict(fields=["reqs"], start=START, end=END, by=["host"], where_tags={"rack": ["", "r2"]}),
    "tags_empty_list": dict(fields=["load"], start=START, end=END, every="1m", by=["host"], where_tags={"host": []}),
    "tags_absent_key": dict(fields=["load"], start=START, end=END, every="1m", where_tags={"nope": "x"}),
    "tags_absent_key_empty": dict(fields=["load"], start=START, end=END, every="1m", where_tags={"nope": ""}),
    "tags_odd_value": dict(fields=["v"], start=T0, end=T0 + 2 * 86_400 * S, by=["host"], measurement="other",
                           where_tags={"host": ODD}),
    "tags_odd_among_others": dict(fields=["v"], start=T0, end=T0 + 2 * 86_400 * S, every="1d", by=["host"],
                                  measurement="other", where_tags={"host": [ODD, "z", UNSTORED]}),
    "tags_unstored_value": dict(fields=["v"], start=T0, end=T0 + 2 * 86_400 * S, by=["host"], measurement="other",
                                where_tags={"host": [UNSTORED, "x\n"]}),
}


def _frames(stores, case):
    kw = dict(CASES[case])
    measurement = kw.pop("measurement", "ctest")
    kw["start"], kw["end"] = pd.Timestamp(kw["start"], tz="UTC"), pd.Timestamp(kw["end"], tz="UTC")
    return [stores[name].frame(measurement, **kw) for name in ("influx", "embedded")]


@pytest.mark.parametrize("case", sorted(CASES))
def test_frames_identical(stores, case):
    influx, embedded = _frames(stores, case)
    pd.testing.assert_frame_equal(influx, embedded, check_exact=False, rtol=1e-12)
    assert list(influx.columns) == ["time", *CASES[case].get("by", ()), *CASES[case]["fields"]]
    assert str(influx["time"].dtype) == "datetime64[ns, UTC]"


def _expected_mean_load(host: str, minute: int) -> float:
    h = list(HOSTS).index(host)
    vals = [((k * 7 + h * 13) % 17) / 4 for k in range(minute * 6, minute * 6 + 6)]
    return sum(vals) / len(vals)


def test_values_by_hand(stores):
    for name in ("influx", "embedded"):
        df = stores[name].frame("ctest", ["load", "temp", "reqs"], START, END, every="1m", by=["host"])
        a0 = df[(df.host == "a") & (df.time == pd.Timestamp(T0, tz="UTC"))].iloc[0]
        assert a0["load"] == pytest.approx(_expected_mean_load("a", 0))
        assert a0["temp"] == pytest.approx(42.5)  # 40..45
        b = df[df.host == "b"]
        assert len(b) == 4  # minute 2 is a gap: no row, not a NaN row
        assert pd.Timestamp(T0 + 120 * S, tz="UTC") not in set(b.time)
        assert df[(df.host == "a") & (df.time == pd.Timestamp(T0 + 120 * S, tz="UTC"))]["temp"].isna().all()

        count = stores[name].frame("ctest", ["temp", "load"], START, END, every="1m", by=["host"], agg="count")
        assert count["temp"].dtype == "int64"
        assert count[count.host == "a"]["temp"].tolist() == [6, 6, 0, 0, 0]
        assert count[count.host == "b"]["load"].tolist() == [6, 6, 6, 6]

        # nearest rank: loads of host c minute 0 sorted; p95 -> index floor(6*0.95+0.5)-1 = 5 (the max),
        # p50 -> floor(3.5)-1 = 2, p5 -> floor(0.8)-1 = -1: no value, so no row at all.
        vals = sorted(((k * 7 + 2 * 13) % 17) / 4 for k in range(6))
        for agg, expect in (("p95", vals[5]), ("p50", vals[2])):
            p = stores[name].frame("ctest", ["load"], START, END, every="1m", by=["host"], agg=agg)
            assert p[(p.host == "c")].iloc[0]["load"] == expect
        assert stores[name].frame("ctest", ["load"], START, END, every="1m", by=["host"], agg="p5").empty

        cut = stores[name].frame("ctest", ["load"], T0 + 30 * S, T0 + 260 * S, every="1m", by=["host"], agg="count")
        # bucket 0 starts before the window (InfluxQL labels it with its aligned start) and holds 3 points
        assert cut[cut.host == "a"]["time"].iloc[0] == pd.Timestamp(T0, tz="UTC")
        assert cut[cut.host == "a"]["load"].tolist() == [3, 6, 6, 6, 2]

        sparse = stores[name].frame("ctest", ["temp"], START, END, by=["nope", "host"])
        assert len(sparse) == 12 and set(sparse.host) == {"a"} and set(sparse.nope) == {""}  # only a has temp

        racks = stores[name].frame("ctest", ["load"], START, END, every="1m", by=["rack"], agg="count")
        assert sorted(set(racks.rack)) == ["", "r1", "r2"]


def test_metadata_identical(stores):
    influx, embedded = stores["influx"], stores["embedded"]
    assert influx.measurements() == embedded.measurements() == ["ctest", "other"]
    for tag, expect in (("host", ["a", "b", "c", "d"]), ("rack", ["r1", "r2"]), ("nope", [])):
        assert influx.tag_values("ctest", tag) == embedded.tag_values("ctest", tag) == expect
    bounds = (pd.Timestamp(T0 + 7 * S, tz="UTC"), pd.Timestamp(T0 + 86_400 * S + 9 * S, tz="UTC"))
    assert influx.time_bounds("other") == embedded.time_bounds("other") == bounds
    assert influx.time_bounds("ctest") == embedded.time_bounds("ctest") == (
        pd.Timestamp(T0, tz="UTC"), pd.Timestamp(T0 + 293 * S, tz="UTC"))
    assert influx.time_bounds("absent") is None and embedded.time_bounds("absent") is None


def test_influxdb2_url_explains_v1_query():
    with pytest.raises(ValueError, match="v1 /query"):
        open_reader("influxdb2://127.0.0.1:8086/bucket?org=o")


def test_bad_arguments(stores):
    for reader in stores.values():
        with pytest.raises(ValueError, match="unknown aggregate"):
            reader.frame("ctest", ["load"], START, END, every="1m", agg="median")
        with pytest.raises(ValueError, match="interval"):
            reader.frame("ctest", ["load"], START, END, every="1 minute")
        with pytest.raises(ValueError, match="not after"):
            reader.frame("ctest", ["load"], END, START)


def test_chunked_responses_are_stitched(stores, monkeypatch):
    """Results larger than one chunk (series split with "partial": true) parse to the same frame."""
    import agents.query.influx as influx_module

    whole = stores["influx"].frame("ctest", ["load", "reqs"], START, END, by=["host"])
    monkeypatch.setattr(influx_module, "_CHUNK_SIZE", 7)
    chunked = stores["influx"].frame("ctest", ["load", "reqs"], START, END, by=["host"])
    assert len(whole) == 4 * 30 - 6
    pd.testing.assert_frame_equal(whole, chunked)
    pd.testing.assert_frame_equal(chunked, stores["embedded"].frame("ctest", ["load", "reqs"], START, END,
                                                                    by=["host"]))


def test_every_as_timedelta(stores):
    import datetime as dt

    for reader in stores.values():
        pd.testing.assert_frame_equal(reader.frame("ctest", ["load"], START, END, every=dt.timedelta(minutes=1)),
                                      reader.frame("ctest", ["load"], START, END, every="1m"))


def test_secrets_from_files_only(tmp_path, monkeypatch):
    from agents.query.influx import InfluxReader
    from agents.stores.url import parse_store_url

    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    monkeypatch.delenv("FLEETWISE_INFLUXDB_TOKEN", raising=False)
    monkeypatch.setenv("FLEETWISE_INFLUXDB_TOKEN_FILE", str(token))
    reader = InfluxReader(parse_store_url("influxdbs://alice@db.example:8086/fw"))
    assert reader._headers["Authorization"] == "Token s3cret-token"
    assert reader._ssl is not None and reader._ssl.verify_mode.name == "CERT_REQUIRED"
    assert "s3cret" not in str(reader.url) and "s3cret" not in repr(reader.url)
    monkeypatch.delenv("FLEETWISE_INFLUXDB_TOKEN_FILE")
    monkeypatch.setenv("FLEETWISE_INFLUXDB_PASSWORD", "pw")
    reader = InfluxReader(parse_store_url("influxdb://alice@127.0.0.1:8086/fw"))
    assert reader._headers["Authorization"] == "Basic YWxpY2U6cHc="  # base64("alice:pw")


# -- aggregate(): several aggregates per series (or per series and bucket) in one pass ---------------------------

ALL_STATS = {"n": ("load", "count"), "total": ("load", "sum"), "avg": ("load", "mean"), "hi": ("load", "max"),
             "lo": ("load", "min"), "head": ("load", "first"), "tail": ("load", "last"), "p95": ("load", "p95"),
             "temps": ("temp", "count"), "temp_hi": ("temp", "max"), "reqs_sum": ("reqs", "sum"),
             "reqs_last": ("reqs", "last")}
TIMES = {"since": ("load", "first_time"), "until": ("load", "last_time"), "temp_until": ("temp", "last_time")}
AGG_CASES = {
    "series_by_host": dict(stats={**ALL_STATS, **TIMES}, by=["host"]),
    "series_by_rack_host": dict(stats={**ALL_STATS, **TIMES}, by=["rack", "host"]),
    "series_by_rack": dict(stats={"n": ("load", "count"), **TIMES}, by=["rack"]),
    "series_no_by": dict(stats={"n": ("reqs", "count"), "s": ("reqs", "sum"), **TIMES}),
    "times_only": dict(stats=TIMES, by=["host"]),
    "temp_only": dict(stats={"n": ("temp", "count"), "t": ("temp", "first_time")}, by=["host"]),
    "buckets_2m": dict(stats=ALL_STATS, every="2m", by=["host"]),
    "buckets_1m_rack": dict(stats={"n": ("load", "count"), "m": ("load", "mean"), "p": ("load", "p50")}, every="1m",
                            by=["rack"]),
    "where_below": dict(stats={"n": ("load", "count"), "s": ("load", "sum"), **TIMES}, by=["host"],
                        where=[("load", "<", 2.0)]),
    "where_two": dict(stats={"n": ("reqs", "count"), "hi": ("load", "max")}, every="2m", by=["host"],
                      where=[("reqs", ">=", 3), ("load", "!=", 0.25)]),
    "cut_window": dict(stats={**ALL_STATS, **TIMES}, start=T0 + 30 * S, end=T0 + 260 * S, by=["host"]),
    "nothing_there": dict(stats={**ALL_STATS, **TIMES}, start=T0 - 3600 * S, end=T0 - 60 * S, by=["host"]),
    "across_days": dict(stats={"n": ("v", "count"), "m": ("v", "max"), **{k: ("v", a) for k, (_, a) in TIMES.items()}},
                        end=T0 + 2 * 86_400 * S, by=["host"], measurement="other"),
    "tags_series": dict(stats={**ALL_STATS, **TIMES}, by=["host"], where_tags={"host": ["b", "d"]}),
    "tags_and_where": dict(stats={"n": ("load", "count"), "s": ("reqs", "sum")}, every="2m", by=["host"],
                           where=[("load", "<", 2.0)], where_tags={"rack": ["r1", "r2"], "host": ["a", "c", "d"]}),
    "tags_no_rack": dict(stats={"n": ("reqs", "count"), **TIMES}, where_tags={"rack": ""}),
    "tags_empty_list": dict(stats={"n": ("load", "count")}, by=["host"], where_tags={"rack": ()}),
    "tags_odd_value": dict(stats={"n": ("v", "count"), "m": ("v", "max")}, end=T0 + 2 * 86_400 * S, by=["host"],
                           measurement="other", where_tags={"host": ODD}),
}


def _aggregates(stores, case):
    kw = dict(AGG_CASES[case])
    measurement = kw.pop("measurement", "ctest")
    start, end = pd.Timestamp(kw.pop("start", START), tz="UTC"), pd.Timestamp(kw.pop("end", END), tz="UTC")
    return [stores[name].aggregate(measurement, start=start, end=end, **kw) for name in ("influx", "embedded")]


@pytest.mark.parametrize("case", sorted(AGG_CASES))
def test_aggregates_identical(stores, case):
    influx, embedded = _aggregates(stores, case)
    pd.testing.assert_frame_equal(influx, embedded, check_exact=False, rtol=1e-12)
    spec = AGG_CASES[case]
    head = ["time"] if "every" in spec else []
    assert list(influx.columns) == [*head, *spec.get("by", ()), *spec["stats"]]
    for name, (_, agg) in spec["stats"].items():
        expect = {"count": "int64", "first_time": "datetime64[ns, UTC]", "last_time": "datetime64[ns, UTC]"}
        assert str(influx[name].dtype) == expect.get(agg, "float64"), name
    if case not in ("nothing_there", "tags_empty_list"):
        assert len(influx)


def _loads(host: str) -> list[tuple[int, float]]:
    """(time, load) of one host's points, straight from the points written (no store involved)."""
    return [(p.time_ns, p.fields["load"]) for p in _points() if p.measurement == "ctest" and p.tags["host"] == host]


def test_where_tags_by_hand(stores):
    """Tag filters keep exactly the points a plain Python filter over the written points keeps."""
    for name in ("influx", "embedded"):
        r = stores[name]
        raw = r.frame("ctest", ["load"], START, END, by=["host"], where_tags={"host": ["c", "a"]})
        expect = sorted(("a", t, v) for t, v in _loads("a")) + sorted(("c", t, v) for t, v in _loads("c"))
        assert list(zip(raw.host, raw.time.astype("int64"), raw.load, strict=True)) == expect
        both = r.frame("ctest", ["load"], START, END, by=["host"], where_tags={"rack": "r1", "host": ["b", "c"]})
        assert set(both.host) == {"b"} and len(both) == len(_loads("b")) == 24  # c is in r2; b has a gap
        no_rack = r.aggregate("ctest", {"n": ("load", "count"), "s": ("load", "sum")}, START, END, by=["host"],
                              where_tags={"rack": ""})
        assert no_rack.host.tolist() == ["d"] and no_rack.n.tolist() == [30]
        assert no_rack.s.iloc[0] == pytest.approx(sum(v for _, v in _loads("d")))
        assert r.frame("ctest", ["load"], START, END, where_tags={"host": []}).empty
        assert r.frame("ctest", ["load"], START, END, where_tags={"nope": "x"}).empty
        assert len(r.frame("ctest", ["load"], START, END, where_tags={"nope": ""})) == 4 * 30 - 6
        odd = r.frame("other", ["v"], T0, T0 + 2 * 86_400 * S, by=["host"], where_tags={"host": ODD})
        assert odd.host.tolist() == [ODD] and odd.v.tolist() == [3.5]
        assert odd.time.tolist() == [pd.Timestamp(T0 + 8 * S, tz="UTC")]
        assert r.frame("other", ["v"], T0, T0 + 2 * 86_400 * S, where_tags={"host": UNSTORED}).empty
        # nothing was dropped by the values above
        assert r.measurements() == ["ctest", "other"]
        assert len(r.frame("ctest", ["load"], START, END)) == 4 * 30 - 6


def test_where_tags_refused(stores):
    for reader in stores.values():
        with pytest.raises(ValueError, match="mapping"):
            reader.frame("ctest", ["load"], START, END, where_tags=[("host", "a")])
        with pytest.raises(ValueError, match="strings"):
            reader.aggregate("ctest", {"n": ("load", "count")}, START, END, where_tags={"host": [1]})
        with pytest.raises(ValueError, match="string or a sequence"):
            reader.frame("ctest", ["load"], START, END, where_tags={"host": 3})
        with pytest.raises(ValueError, match="empty tag"):
            reader.frame("ctest", ["load"], START, END, where_tags={"": "a"})


def test_aggregate_values_by_hand(stores):
    for name in ("influx", "embedded"):
        df = stores[name].aggregate("ctest", {**ALL_STATS, **TIMES}, START, END, by=["host"]).set_index("host")
        loads = {h: [((k * 7 + i * 13) % 17) / 4 for k in range(30)] for i, h in enumerate(HOSTS)}
        loads["b"] = [v for k, v in enumerate(loads["b"]) if not 12 <= k < 18]  # b's gap (minute 2)
        a, b = df.loc["a"], df.loc["b"]
        assert (a["n"], b["n"]) == (30, 24)
        assert a["total"] == pytest.approx(sum(loads["a"])) and a["avg"] == pytest.approx(sum(loads["a"]) / 30)
        assert (a["hi"], a["lo"], a["head"], a["tail"]) == (max(loads["a"]), min(loads["a"]), loads["a"][0],
                                                            loads["a"][-1])
        assert a["p95"] == sorted(loads["a"])[28]  # nearest rank: floor(30 * 0.95 + 0.5) - 1
        assert (a["temps"], a["temp_hi"], b["temps"]) == (12, 51.0, 0)
        assert math.isnan(b["temp_hi"])
        assert a["reqs_sum"] == sum(k * 5 % 11 for k in range(30)) and a["reqs_last"] == 29 * 5 % 11
        assert a["since"] == pd.Timestamp(T0, tz="UTC") and b["since"] == pd.Timestamp(T0 + S, tz="UTC")
        assert a["until"] == pd.Timestamp(T0 + 290 * S, tz="UTC")
        assert a["temp_until"] == pd.Timestamp(T0 + 110 * S, tz="UTC") and pd.isna(b["temp_until"])

        below = stores[name].aggregate("ctest", {"n": ("load", "count")}, START, END, by=["host"],
                                       where=[("load", "<", 2.0)]).set_index("host")["n"]
        assert below.to_dict() == {h: sum(v < 2.0 for v in loads[h]) for h in HOSTS}

        buckets = stores[name].aggregate("ctest", {"n": ("temp", "count"), "m": ("load", "max")}, START, END,
                                         every="2m", by=["host"])
        a2 = buckets[buckets.host == "a"]
        assert a2["n"].tolist() == [12, 0, 0] and a2["m"].tolist() == [max(loads["a"][i:i + 12])
                                                                       for i in (0, 12, 24)]


def test_aggregate_refuses_bad_requests(stores):
    for reader in stores.values():
        with pytest.raises(ValueError, match="per series only"):
            reader.aggregate("ctest", {"t": ("load", "first_time")}, START, END, every="1m")
        with pytest.raises(ValueError, match="unknown aggregate"):
            reader.aggregate("ctest", {"t": ("load", "median")}, START, END)
        with pytest.raises(ValueError, match="duplicate or reserved"):
            reader.aggregate("ctest", {"host": ("load", "max")}, START, END, by=["host"])
        with pytest.raises(ValueError, match="operator"):
            reader.aggregate("ctest", {"n": ("load", "count")}, START, END, where=[("load", "<>", 1)])
        with pytest.raises(ValueError, match="finite number"):
            reader.aggregate("ctest", {"n": ("load", "count")}, START, END, where=[("load", "<", "1; DROP")])
        with pytest.raises(ValueError, match="mapping"):
            reader.aggregate("ctest", [("load", "count")], START, END)


def test_aggregate_quotes_odd_names(tmp_path_factory):
    """Field, tag and column names with quotes, spaces and backslashes reach both stores quoted, never pasted."""
    from tests.services import influxd

    odd = [Point('we"ird m', {'ta\\g "': "x,y=z"}, {'f "1"\\x': float(k), "n": k}, T0 + k * S) for k in range(5)]
    root = tmp_path_factory.mktemp("odd-embedded")
    EmbeddedWriter(root).write(odd)
    stats = {'c "o"\\l': ('f "1"\\x', "sum"), "t": ('f "1"\\x', "last_time")}
    with influxd(tmp_path_factory.mktemp("odd-influxd")) as server:
        create_database(server.url, "fw")
        write_points(server.url, "fw", odd)
        influx = open_reader(server.url.replace("http://", "influxdb://") + "/fw")
        with open_reader(f"embedded:{root}") as embedded:
            frames = [r.aggregate('we"ird m', stats, START, END, by=['ta\\g "'], where=[('f "1"\\x', ">", 0.5)])
                      for r in (influx, embedded)]
    pd.testing.assert_frame_equal(*frames)
    assert frames[0].iloc[0].tolist() == ["x,y=z", 10.0, pd.Timestamp(T0 + 4 * S, tz="UTC")]
