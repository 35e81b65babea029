"""The InfluxDB reader on the deploy's rollups (a store URL with ?rollup=five_minutes,fifteen_minutes,one_hour):
aggregates a level answers exactly read the coarsest such level and give the raw points' numbers, even where
buckets hold different numbers of points (a mean of means would be off there); anything else reads the raw
points."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from agents.query import open_reader
from agents.query.base import FrameQuery
from tests.store_helpers import create_database, influx_query, write_lines
from tests.test_deploy_analysis import iql_statements

pytestmark = pytest.mark.services


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(raw URL, rollups URL, t0): two hosts x two GPUs over an hour on an hour boundary 3 hours back, one sampled
    every 10 s, the other at uneven times (1 to 4 points a 5-minute bucket); the deploy's statements run, then
    each continuous query's SELECT over the hour (the backfill docs/deploy.md describes)."""
    from tests.services import influxd

    with influxd(tmp_path_factory.mktemp("influxd-rollup")) as server:
        url = server.url
        for statement in iql_statements():
            error = influx_query(url, statement)["results"][0].get("error", "")
            assert not error or "already exists" in error, (statement, error)
        create_database(url, "fleet")
        now = int(time.time())
        t0 = now - now % 3600 - 3 * 3600  # every level holds it: their queries ran long since
        rng = np.random.default_rng(7)
        lines = []
        for g in range(2):
            for i in range(360):
                lines.append(f"gpu,host=a,gpu={g} utilization_ratio={0.1 * g + i / 400},power_watts={100 + i}i "
                             f"{(t0 + 10 * i) * 10**9}")
            uneven = np.sort(rng.choice(3600, size=30, replace=False))
            for s in uneven:
                lines.append(f"gpu,host=b,gpu={g} utilization_ratio={rng.random():.6f} {(t0 + int(s)) * 10**9}")
        # jobs on host a's GPUs: j1 on both for the first 40 minutes, j2 sharing GPU 0 from minute 20 to 50
        for job, gpus, first, last in (("j1", (0, 1), 0, 240), ("j2", (0,), 120, 300)):
            for g in gpus:
                lines += [f"job_gpu,host=a,gpu={g},job={job} utilization_ratio={0.5 + g / 10} {(t0 + 10 * i) * 10**9}"
                          for i in range(first, last)]
        write_lines(url, "fleet", lines)
        cqs = [s for s in iql_statements() if s.startswith("CREATE CONTINUOUS QUERY")]
        assert len(cqs) == 9  # three levels: every series, gpu_by_host, job_gpu_by_host_gpu
        for cq in cqs:
            select = cq[cq.index("SELECT"):cq.rindex(" END")].replace(
                "GROUP BY", f"WHERE time >= {t0}s AND time < {t0 + 3600}s GROUP BY")
            assert "error" not in influx_query(url, select, db="fleet")["results"][0]
        base = "influxdb://" + url.split("://", 1)[1] + "/fleet"
        yield base, base + "?rollup=five_minutes,fifteen_minutes,one_hour", pd.Timestamp(t0, unit="s", tz="UTC")


COMPANIONS = "&rollup_by=gpu:host,job_gpu:host:gpu"


def test_rollup_answers_bucketed_means_sums_counts_and_extremes_as_the_raw_points(stores):
    raw_url, rollup_url, t0 = stores
    stats = {"mean": ("utilization_ratio", "mean"), "n": ("utilization_ratio", "count"),
             "total": ("utilization_ratio", "sum"), "hi": ("power_watts", "max"), "lo": ("power_watts", "min")}
    with open_reader(raw_url) as raw, open_reader(rollup_url) as rollup:
        end = t0 + pd.Timedelta(hours=1)
        mine = {"host": ["a", "b"]}  # other tests write gpu points to this server too
        want = raw.aggregate("gpu", stats, t0, end, every="15m", by=["host", "gpu"], where_tags=mine)
        got = rollup.aggregate("gpu", stats, t0, end, every="15m", by=["host", "gpu"], where_tags=mine)
        assert rollup._rollup_level(rollup_query(t0, end, "15m"), [("mean", "utilization_ratio")]) == "fifteen_minutes"
        assert len(want) == 16 and want["n"].sum() == 2 * 360 + 2 * 30  # 4 series x 4 buckets, every point
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
        # host b's buckets hold uneven counts: the mean of its 5-minute means is not the mean
        f = raw.frame("gpu", ["utilization_ratio"], t0, end, every="5m", by=["host", "gpu"], where_tags=mine)
        b = f[(f["host"] == "b") & (f["gpu"] == "0")].assign(bucket=lambda d: d["time"].dt.floor("15min"))
        of_means = b.groupby("bucket")["utilization_ratio"].mean().to_numpy()
        exact = want[(want["host"] == "b") & (want["gpu"] == "0")]["mean"].to_numpy()
        assert np.abs(of_means - exact).max() > 1e-3
        # frame() reads it the same way
        half_hours = dict(every="30m", by=["host"], where_tags=mine)
        pd.testing.assert_frame_equal(rollup.frame("gpu", ["utilization_ratio"], t0, end, **half_hours),
                                      raw.frame("gpu", ["utilization_ratio"], t0, end, **half_hours),
                                      check_exact=False, rtol=1e-12)


def test_what_the_rollup_cannot_answer_exactly_reads_the_raw_points(stores):
    raw_url, rollup_url, t0 = stores
    with open_reader(raw_url) as raw, open_reader(rollup_url) as rollup:
        off = t0 + pd.Timedelta(minutes=1)  # a window not on the rollup's 5-minute grid
        end = t0 + pd.Timedelta(hours=1)
        assert rollup._rollup_source(rollup_query(off, end, "15m"), [("mean", "utilization_ratio")]) is None
        assert rollup._rollup_source(rollup_query(t0, end, "1m"), [("mean", "utilization_ratio")]) is None
        assert rollup._rollup_source(rollup_query(t0, end, "15m"), [("p95", "utilization_ratio")]) is None
        assert rollup._rollup_source(rollup_query(off, end, None), [("mean", "utilization_ratio")]) is None
        frame_raw = FrameQuery.build("gpu", ["utilization_ratio"], t0, end, None, (), "mean", None)
        assert rollup._rollup_source(frame_raw, [("mean", "utilization_ratio")]) is None  # the points themselves
        for args in ((off, end, "15m"), (t0, end, "1m")):
            pd.testing.assert_frame_equal(rollup.frame("gpu", ["utilization_ratio"], *args, by=["host"]),
                                          raw.frame("gpu", ["utilization_ratio"], *args, by=["host"]))
        p95 = dict(measurement="gpu", fields=["utilization_ratio"], start=t0, end=end, every="15m", agg="p95")
        pd.testing.assert_frame_equal(rollup.frame(**p95), raw.frame(**p95))


# (window start minutes past t0, bucket, the level read, whether its points are read and summed here)
@pytest.mark.parametrize(("start_min", "every", "level", "scan"), [
    (0, "5m", "five_minutes", True), (0, "10m", "five_minutes", True), (0, "15m", "fifteen_minutes", True),
    (0, "30m", "fifteen_minutes", True), (0, "1h", "one_hour", True), (15, "1h", "fifteen_minutes", False),
    (5, "15m", "five_minutes", True), (0, None, "one_hour", False), (15, None, "fifteen_minutes", False),
    (1, "5m", None, False)])
def test_each_aggregate_reads_the_coarsest_level_that_answers_it_and_gets_the_raw_numbers(stores, start_min, every,
                                                                                           level, scan):
    raw_url, rollup_url, t0 = stores
    start, end = t0 + pd.Timedelta(minutes=start_min), t0 + pd.Timedelta(hours=1)
    stats = {"mean": ("utilization_ratio", "mean"), "n": ("utilization_ratio", "count"),
             "total": ("power_watts", "sum")}
    args = dict(every=every, by=["host", "gpu"], where_tags={"host": ["a", "b"]})
    with open_reader(raw_url) as raw, open_reader(rollup_url) as rollup:
        q = rollup_query(start, end, every)
        assert rollup._rollup_level(q, [("mean", "utilization_ratio")]) == level
        assert (level is not None and rollup._scan_rollup(q, level)) == scan
        want = raw.aggregate("gpu", stats, start, end, **args)
        got = rollup.aggregate("gpu", stats, start, end, **args)
        assert len(want) and (every is not None or len(want) == 4)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
        # host a: 6 points a minute per GPU, whatever the level
        a0 = want[(want["host"] == "a") & (want["gpu"] == "0")]
        assert a0["n"].sum() == 6 * (60 - start_min)


@pytest.fixture(scope="module")
def recent(stores):
    """The time host c's GPU reported 7 points, one a minute until just now (written once)."""
    now = time.time_ns()
    write_lines(stores[0].replace("influxdb://", "http://").rsplit("/", 1)[0], "fleet",
                [f"gpu,host=c,gpu=0 utilization_ratio={0.1 * k},power_watts={200 + k}i {now - k * 60 * 10**9}"
                 for k in range(1, 8)])
    return now


@pytest.mark.parametrize("companions", ["", COMPANIONS])
@pytest.mark.parametrize("every", ["15m", "1h", None])
def test_what_no_continuous_query_has_rolled_up_yet_is_read_from_the_raw_points(stores, recent, every, companions):
    """A window reaching now: the levels hold the old hour, not the last minutes (no continuous query runs
    here); those come from the raw points, added to the level's sums and counts bucket by bucket (also where
    the level read is gpu_by_host, the per-host companion)."""
    raw_url, rollup_url, t0 = stores
    now = recent
    start, end = t0, pd.Timestamp(now - now % 3_600_000_000_000 + 3_600_000_000_000, unit="ns", tz="UTC")
    stats = {"mean": ("utilization_ratio", "mean"), "n": ("utilization_ratio", "count"),
             "hi": ("power_watts", "max")}
    args = dict(every=every, by=["host"], where_tags={"host": ["a", "c"]})
    with open_reader(raw_url) as raw, open_reader(rollup_url + companions) as rollup:
        q = rollup_query(start, end, every, by=["host"], where_tags=args["where_tags"])
        assert rollup._rollup_level(q, [("mean", "utilization_ratio")]) is not None
        assert ('"gpu_by_host"' in rollup._rollup_source(q, [("mean", "utilization_ratio")])) == bool(companions)
        want = raw.aggregate("gpu", stats, start, end, **args)
        got = rollup.aggregate("gpu", stats, start, end, **args)
        assert want[want["host"] == "c"]["n"].sum() == 7 and want[want["host"] == "a"]["n"].sum() == 720
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
        # and once the clock says every level holds it all, the levels alone answer (without host c)
        rollup.now_ns = lambda: now + 10**6 * 3_600_000_000_000
        alone = rollup.aggregate("gpu", stats, start, end, **args)
        assert set(alone["host"]) == {"a"} and alone["n"].sum() == 720


def test_json_and_messagepack_answers_give_the_same_frames(stores):
    """The reader asks for MessagePack; a server that answers JSON (its default, for a type it does not know)
    is read the same."""
    raw_url, rollup_url, t0 = stores
    end = t0 + pd.Timedelta(hours=1)
    answered = set()
    for url in (raw_url, rollup_url):
        with open_reader(url) as packed, open_reader(url) as plain:
            plain.accept = "application/json"
            for reader in (packed, plain):  # what the server answered each
                documents = reader._documents
                reader._documents = lambda resp, d=documents: answered.add(resp.headers["Content-Type"]) or d(resp)
            for every in ("5m", None):
                args = ("gpu", ["utilization_ratio", "power_watts"], t0, end)
                want = plain.frame(*args, every=every, by=["host", "gpu"], where_tags={"host": ["a", "b"]})
                assert len(want) == (4 * 12 if every else 2 * 360 + 2 * 30)
                pd.testing.assert_frame_equal(
                    packed.frame(*args, every=every, by=["host", "gpu"], where_tags={"host": ["a", "b"]}), want)
            assert packed.accept == "application/x-msgpack"
    assert answered == {"application/x-msgpack", "application/json"}


def test_the_levels_hold_what_the_continuous_queries_wrote(stores):
    """Each level's own rows: an hour of host a's GPU 0 (360 points) is 12, 4 and 1 rows whose counts add up."""
    raw_url, _, t0 = stores
    base = "http://" + raw_url.split("://", 1)[1].rsplit("/", 1)[0]
    for level, rows in (("five_minutes", 12), ("fifteen_minutes", 4), ("one_hour", 1)):
        q = (f'SELECT "count_utilization_ratio" FROM "fleet"."{level}"."gpu" WHERE "host" = \'a\' AND "gpu" = \'0\' '
             f"AND time >= {t0.value} AND time < {t0.value + 3600 * 10**9}")
        values = influx_query(base, q, db="fleet")["results"][0]["series"][0]["values"]
        assert len(values) == rows and sum(v[1] for v in values) == 360


def test_rollup_levels_from_the_store_url():
    from agents.query.influx import rollup_levels

    assert rollup_levels("five_minutes,one_hour,fifteen_minutes") == [
        ("one_hour", 3600 * 10**9), ("fifteen_minutes", 900 * 10**9), ("five_minutes", 300 * 10**9)]
    assert rollup_levels("five_minutes", "5m") == [("five_minutes", 300 * 10**9)]  # the older form
    assert rollup_levels("daily:1d, ten:10m") == [("daily", 86400 * 10**9), ("ten", 600 * 10**9)]
    assert rollup_levels("mine", "2m") == [("mine", 120 * 10**9)] and rollup_levels("") == []
    with pytest.raises(Exception, match="rollup 'x': bad interval"):
        rollup_levels("x:soon")


def test_a_rollup_name_reaches_influxql_only_as_a_quoted_identifier(stores):
    raw_url, _, t0 = stores
    nasty = 'five"; DROP DATABASE "fleet'
    with open_reader(raw_url + "?rollup=" + nasty.replace(" ", "%20").replace('"', "%22")) as r:
        source = r._rollup_source(rollup_query(t0, t0 + pd.Timedelta(hours=1), "15m"), [("mean", "u")])
        assert source == '"fleet"."five\\"; DROP DATABASE \\"fleet"."gpu"'
        with pytest.raises(Exception, match="retention policy"):  # influxd: no such policy, and nothing dropped
            r.frame("gpu", ["utilization_ratio"], t0, t0 + pd.Timedelta(hours=1), every="15m")
    assert "fleet" in str(influx_query(stores[0].replace("influxdb://", "http://").rsplit("/", 1)[0],
                                       "SHOW DATABASES"))


def rollup_query(start, end, every, measurement="gpu", by=(), where_tags=None):
    from agents.query.base import AggregateQuery

    return AggregateQuery.build(measurement, {"m": ("utilization_ratio", "mean")}, start, end, every, by, (),
                                where_tags)


@pytest.mark.parametrize("every", ["15m", "1h", None])
def test_a_window_without_points_is_empty_as_from_the_raw_points(stores, every):
    raw_url, rollup_url, t0 = stores
    start, end = t0 - pd.Timedelta(hours=2), t0  # before anything was written
    stats = {"mean": ("utilization_ratio", "mean"), "n": ("utilization_ratio", "count")}
    with open_reader(raw_url) as raw, open_reader(rollup_url) as rollup:
        assert rollup._rollup_level(rollup_query(start, end, every), [("mean", "utilization_ratio")]) is not None
        for by in ((), ("host",)):
            got = rollup.aggregate("gpu", stats, start, end, every=every, by=list(by))
            want = raw.aggregate("gpu", stats, start, end, every=every, by=list(by))
            assert len(want) == 0
            pd.testing.assert_frame_equal(got, want)


@pytest.mark.parametrize("every", ["5m", "15m", "1h", None])
def test_companions_answer_queries_by_their_tags_with_the_raw_numbers(stores, every):
    """gpu per host (and over the fleet) from gpu_by_host, job_gpu per GPU from job_gpu_by_host_gpu: the same
    frames as from the raw points; a query by a tag the companion dropped reads the per-series level."""
    raw_url, rollup_url, t0 = stores
    start, end = t0, t0 + pd.Timedelta(hours=1)
    stats = {"mean": ("utilization_ratio", "mean"), "n": ("utilization_ratio", "count"),
             "hi": ("power_watts", "max")}
    with open_reader(raw_url) as raw, open_reader(rollup_url + COMPANIONS) as rollup:
        for by, where in ((["host"], None), ([], None), (["host"], {"host": "b"})):
            q = rollup_query(start, end, every, by=by, where_tags=where)
            assert '"gpu_by_host"' in rollup._rollup_source(q, [("mean", "utilization_ratio")])
            want = raw.aggregate("gpu", stats, start, end, every=every, by=by, where_tags=where)
            got = rollup.aggregate("gpu", stats, start, end, every=every, by=by, where_tags=where)
            assert len(want)
            pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
        # host a: 2 GPUs x 6 points a minute
        a = raw.aggregate("gpu", stats, start, end, by=["host"], where_tags={"host": "a"})
        assert a["n"].tolist() == [2 * 6 * 60]
        for by, where in ((["host", "gpu"], None), (["host"], {"gpu": "0"})):
            q = rollup_query(start, end, every, by=by, where_tags=where)
            assert '"gpu_by_host"' not in rollup._rollup_source(q, [("mean", "utilization_ratio")])
        held = {"held": ("utilization_ratio", "count")}
        want = raw.aggregate("job_gpu", held, start, end, every=every, by=["host", "gpu"])
        pd.testing.assert_frame_equal(rollup.aggregate("job_gpu", held, start, end, every=every, by=["host", "gpu"]),
                                      want)
        # GPU 0 held by j1 for 240 samples and j2 for 180, GPU 1 by j1 alone: 240
        assert want.groupby("gpu")["held"].sum().to_dict() == {"0": 420, "1": 240}
        if every is not None:  # the fleet page's form of it (a frame without buckets is the points themselves)
            args = dict(every=every, by=["host", "gpu"], agg="count")
            pd.testing.assert_frame_equal(rollup.frame("job_gpu", ["utilization_ratio"], start, end, **args),
                                          raw.frame("job_gpu", ["utilization_ratio"], start, end, **args))
        q = rollup_query(start, end, every, measurement="job_gpu", by=["host", "gpu"])
        assert '"job_gpu_by_host_gpu"' in rollup._rollup_source(q, [("count", "utilization_ratio")])


def test_rollup_by_names_reach_influxql_only_as_checked_identifiers():
    from agents.query.influx import rollup_groups

    assert rollup_groups("gpu:host, job_gpu:host:gpu") == {"gpu": ("host",), "job_gpu": ("host", "gpu")}
    assert rollup_groups("") == {}
    for bad in ("gpu", "gpu:", ":host", "gpu:ho\nst"):
        with pytest.raises(Exception, match=r"rollup_by|empty|newline"):
            rollup_groups(bad)


def test_one_statements_rows_combined_per_bucket_and_group_as_pandas_groupby_does():
    """_combine_runs (adjacent rows of a (bucket, group) added with reduceat) against the groupby it replaced:
    runs of 1 to 3 rows, missing values inside a run and whole runs missing."""
    from agents.query.influx import _combine_runs

    rng = np.random.default_rng(3)
    groups = np.repeat(np.arange(40), 30)  # 40 groups in turn, each its rows in time order
    buckets = np.concatenate([np.sort(rng.integers(0, 12, 30)) for _ in range(40)]) * 900 * 10**9
    keys = {"__t": buckets, "__g0": groups % 7, "__g1": groups // 7}
    values = rng.random((len(groups), 4))
    values[rng.random(values.shape) < 0.3] = np.nan
    columns = {"sum_u": values[:, 0], "count_u": np.where(np.isnan(values[:, 0]), np.nan, 1.0),
               "max_p": values[:, 2], "min_p": values[:, 3]}
    got = _combine_runs(keys, columns)
    grouped = pd.DataFrame({**keys, **columns}).groupby(list(keys), sort=False)
    want = pd.concat([grouped["sum_u"].sum(min_count=1), grouped["count_u"].sum(min_count=1),
                      grouped["max_p"].max(), grouped["min_p"].min()], axis=1).reset_index()
    assert len(got) < len(groups) and got["sum_u"].isna().any()  # runs were combined, some wholly missing
    pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=1e-12)
    # one row a (bucket, group): the rows as they came
    one = {"__t": np.arange(5) * 10, "__g0": np.zeros(5, dtype=np.int64)}
    pd.testing.assert_frame_equal(_combine_runs(one, {"sum_u": np.arange(5.0)}),
                                  pd.DataFrame({**one, "sum_u": np.arange(5.0)}))
