"""The fleet simulator: deterministic, schema-exact, consistent with its own ground truth."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict

import numpy as np
import pyarrow as pa
import pytest

from agents.schema import MEASUREMENTS, Kind
from agents.simulate import plan, simulate
from agents.simulate import workloads as wl
from agents.simulate.profile import ProfileError, load_profile, parse_profile
from agents.simulate.scheduler import Job, Node, Scheduler
from tests.conftest import require_data
from tests.helpers import run_cli

AGENT_MEASUREMENTS = {"cpu", "memory", "system", "cpu_info", "gpu", "gpu_info", "net", "infiniband", "disk",
                      "filesystem", "lustre", "job", "job_gpu", "job_progress"}
INTERVAL = 120


def _run(seed: int, nodes: int = 14, days: float = 0.5, profile=None, interval: float = INTERVAL):
    tables: dict[str, list[pa.Table]] = defaultdict(list)
    result = simulate(nodes=nodes, days=days, interval=interval, seed=seed, profile=profile,
                      sink=lambda name, t: tables[name].append(t))
    return result, {k: pa.concat_tables(v) for k, v in tables.items()}


def _run_with_truth(tmp_dir, seed: int, nodes: int, days: float, profile=None, interval: float = 300):
    """(tables by measurement, truth.json as a dict) of one simulation kept in memory."""
    tables: dict[str, list[pa.Table]] = defaultdict(list)
    truth_path = tmp_dir / "truth.json"
    simulate(nodes=nodes, days=days, interval=interval, seed=seed, profile=profile, truth_path=truth_path,
             sink=lambda name, t: tables[name].append(t))
    return {k: pa.concat_tables(v) for k, v in tables.items()}, json.loads(truth_path.read_text())


@pytest.fixture(scope="module")
def sim():
    return _run(7)


@pytest.fixture(scope="module")
def rebooting(tmp_path_factory):
    prof = load_profile(None).model_copy(deep=True)
    prof.mix.reboot_probability = 1.0
    return _run_with_truth(tmp_path_factory.mktemp("truth"), 11, nodes=10, days=1, profile=prof)


def test_same_seed_same_tables_other_seed_different():
    _, a = _run(3, nodes=8, days=0.25)
    _, b = _run(3, nodes=8, days=0.25)
    _, c = _run(4, nodes=8, days=0.25)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equals(b[name]), name
    assert not a["gpu"].equals(c["gpu"])
    assert not a["cpu"].equals(c["cpu"])


def test_every_column_matches_the_schema(sim):
    _, tables = sim
    assert set(tables) >= AGENT_MEASUREMENTS
    for name, table in tables.items():
        m = MEASUREMENTS[name]
        assert table.column_names[0] == "time"
        assert table.schema.field("time").type == pa.timestamp("ns", tz="UTC")
        assert set(table.column_names) == {"time", *m.tags, *m.fields}, name
        for tag in m.tags:
            assert table.schema.field(tag).type == pa.string(), (name, tag)
            assert table[tag].null_count == 0, (name, tag)
        for fname, f in m.fields.items():
            want = {int: pa.int64(), float: pa.float64(), str: pa.string()}[f.type]
            assert table.schema.field(fname).type == want, (name, fname)
        assert table.num_rows > 0


def test_row_counts_follow_the_fleet(sim):
    result, tables = sim
    rounds = result.rounds
    assert rounds == 0.5 * 86400 / INTERVAL
    _, nodes, _, _ = plan(14, 0.5, INTERVAL, 7)
    # a rebooting node sends nothing for REBOOT_DOWN_ROUNDS rounds
    down = {n.host: 4 if n.reboot_round is not None else 0 for n in nodes}
    assert tables["cpu"].num_rows == sum(rounds - down[n.host] for n in nodes)
    assert tables["gpu"].num_rows == sum(n.cls.devices * (rounds - down[n.host]) for n in nodes)
    assert set(tables["cpu"]["cpu"].to_pylist()) == {"total"}


def test_fleet_is_heterogeneous(sim):
    _, tables = sim
    info = tables["cpu_info"].to_pandas()
    assert set(info["arch"]) == {"x86_64", "aarch64", "ppc64le"}
    models = set(tables["gpu"]["model"].to_pylist())
    assert models == {"Tesla V100-SXM2-32GB", "NVIDIA A100-SXM4-80GB", "NVIDIA H100 80GB HBM3", "AMD Instinct MI250"}
    assert set(tables["gpu"]["vendor"].to_pylist()) == {"nvidia", "amd"}
    assert set(tables["filesystem"]["fstype"].to_pylist()) == {"xfs", "lustre"}
    ib = tables["infiniband"].to_pandas()
    assert set(ib["rate_bytes_per_second"]) == {25e9, 50e9}  # HDR and NDR


def test_idle_jobs_barely_use_their_gpus(tmp_path):
    tables, truth = _run_with_truth(tmp_path, 5, nodes=14, days=1)
    jg = tables["job_gpu"].to_pandas()
    gpu = tables["gpu"].to_pandas()
    idle = [j for j in truth["jobs"] if j.get("bottleneck") == "idle"]
    busy = [j for j in truth["jobs"] if j.get("bottleneck") == "gpu_compute" and j["kind"] == "training"]
    assert idle and busy
    for j in idle:
        rows = jg[jg["job"] == j["job"]]
        assert len(rows) > 0
        assert rows["utilization_ratio"].mean() < 0.03
        host = j["hosts"][0]
        g = gpu[(gpu["host"] == host) & gpu["gpu"].isin([str(x) for x in j["gpus"][host]])
                & (gpu["time"] >= rows["time"].min()) & (gpu["time"] <= rows["time"].max())]
        assert len(g) == len(rows) and g["utilization_ratio"].max() < 0.08
        assert j["idle_gpu_hours"] == pytest.approx(j["gpu_hours_allocated"])
    for j in busy:
        assert jg[jg["job"] == j["job"]]["utilization_ratio"].mean() > 0.5
    total_idle = sum(j["idle_gpu_hours"] for j in truth["jobs"] if j["placed"])
    assert truth["totals"]["idle_gpu_hours_in_idle_jobs"] == pytest.approx(total_idle)


def test_progress_rate_matches_true_throughput(tmp_path):
    tables, truth = _run_with_truth(tmp_path, 7, nodes=14, days=0.5, interval=INTERVAL)
    truth = {j["job"]: j for j in truth["jobs"]}
    prog = tables["job_progress"].to_pandas()
    training = [jid for jid in prog["job"].unique() if truth[jid]["kind"] == "training"]
    assert len(training) >= 3
    for jid in training:
        rows = prog[prog["job"] == jid].sort_values("time")
        assert set(rows["unit"]) == {"samples"}
        assert rows["progress_per_second"].median() == pytest.approx(truth[jid]["throughput"], rel=0.02)
        # the counter and the rate agree: rate = delta progress / interval
        d = np.diff(rows["progress"].to_numpy()) / INTERVAL
        assert np.allclose(d, rows["progress_per_second"].to_numpy()[1:], rtol=1e-6)
        # the job's first report has no rate yet (the textfile collector needs two reads)
        assert rows["progress_per_second"].isna().iloc[0]
        assert rows["time"].iloc[0].value == _start_ns() + int(truth[jid]["start_seconds"] * 1e9)


def _start_ns() -> int:
    from agents.simulate import DEFAULT_START, parse_start

    return parse_start(DEFAULT_START)


def test_counters_never_decrease_except_at_reboots(rebooting):
    tables, truth = rebooting
    reboots = {n["host"]: _start_ns() + int(n["reboot_seconds"] * 1e9) for n in truth["nodes"]
               if n["reboot_seconds"] is not None}
    assert len(reboots) == 10  # every node reboots once with reboot_probability = 1
    seen_reset = 0
    for name in ("system", "net", "infiniband", "disk", "lustre", "gpu"):
        m = MEASUREMENTS[name]
        df = tables[name].to_pandas()
        counters = [f for f, spec in m.fields.items() if spec.kind is Kind.COUNTER]
        for key, series in df.groupby(list(m.tags), sort=False):
            series = series.sort_values("time")
            t = series["time"].astype("int64").to_numpy()
            host = key[0]
            for c in counters:
                v = series[c].to_numpy(dtype=float)
                if np.isnan(v).all():
                    continue  # e.g. NVLink on an AMD device: never emitted
                drops = np.flatnonzero(np.diff(v) < 0) + 1
                for k in drops:
                    assert t[k] == reboots[host], (name, key, c)
                    seen_reset += 1
    assert seen_reset > 0


def test_rates_are_consistent_and_never_negative(rebooting):
    tables, _ = rebooting
    pairs = {"net": [("rx_bytes", "rx_bytes_per_second")], "disk": [("read_bytes", "read_bytes_per_second")],
             "lustre": [("write_bytes", "write_bytes_per_second")],
             "infiniband": [("xmit_bytes", "xmit_bytes_per_second")]}
    for name, fields in pairs.items():
        m = MEASUREMENTS[name]
        df = tables[name].to_pandas()
        for _, s in df.groupby(list(m.tags), sort=False):
            s = s.sort_values("time")
            gap = np.diff(s["time"].astype("int64").to_numpy()) / 1e9
            for counter, rate in fields:
                r = s[rate].to_numpy(dtype=float)
                assert np.isnan(r[0])  # the first read has no rate
                assert (r[~np.isnan(r)] >= 0).all()
                dv = np.diff(s[counter].to_numpy(dtype=float))
                ok = (gap == 300) & ~np.isnan(r[1:])
                assert np.allclose(dv[ok] / 300, r[1:][ok])
                # after a reboot's gap the agent has no previous read: the rate is absent, not negative
                assert np.isnan(r[1:][gap > 300]).all()
    for name in ("cpu",):
        df = tables[name].to_pandas()
        ratios = df[[c for c in df.columns if c.endswith("_ratio")]].to_numpy(dtype=float)
        ok = ratios[~np.isnan(ratios)]
        assert ((ok >= 0) & (ok <= 1)).all()
        total = df[[f"{m}_ratio" for m in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")]]
        assert np.allclose(total.sum(axis=1, skipna=False).dropna(), 1.0)


def test_scheduler_never_overcommits(rebooting, sim):
    tables, truth = rebooting
    for t in (tables, sim[1]):
        jg = t["job_gpu"].to_pandas()
        assert not jg.duplicated(["host", "gpu", "time"]).any()
        gpu = t["gpu"].to_pandas()
        busy = gpu[gpu["processes"] > 0]
        running = jg[jg["memory_used_bytes"] > 0]
        assert len(busy) == len(running)  # every busy GPU row has exactly one job running on it
        # and the other job_gpu rows are GPUs held with nothing of the job on them (an idle holder's extra GPUs)
        held_only = jg[jg["memory_used_bytes"] == 0]
        assert len(held_only) > 0 and (held_only["utilization_ratio"] == 0).all()
    used: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    devices = {n["host"]: n["devices"] for n in truth["nodes"]}
    reboot = {n["host"]: n["reboot_seconds"] for n in truth["nodes"]}
    for j in truth["jobs"]:
        if not j["placed"]:
            continue
        for host, gpus in j["gpus"].items():
            assert len(gpus) <= devices[host]
            for g in gpus:
                used[(host, g)].append((j["start_seconds"], j["end_seconds"]))
            # a node is drained for its reboot
            assert j["end_seconds"] <= reboot[host] - 4 * 300 or j["start_seconds"] > reboot[host]
    for spans in used.values():
        spans.sort()
        for (_, e0), (s1, _) in itertools.pairwise(spans):
            assert s1 >= e0


def test_scheduler_queues_when_full():
    from agents.simulate.profile import load_profile as lp

    cls = lp(None).classes()[1]  # a100-epyc, 4 devices
    nodes = [Node(0, "n0", cls)]
    jobs = [Job(str(i), "training", "imagenet/resnet50", "u", "slurm", 0, 10, "A100", 4, 1, 8, 1 << 30)
            for i in range(3)]
    Scheduler(nodes, 100).run(jobs)
    assert [j.start for j in jobs] == [0, 10, 20]  # each waits for the one before: 4 GPUs, 4 asked
    assert [j.gpus for j in jobs] == [{0: [0, 1, 2, 3]}] * 3


def test_profile_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "fleet.toml"
    bad.write_text('name = "x"\n[[node_class]]\nname = "a"\nshare = 1\ncpu = "epyc-7763"\nmemory_gib = 64\n'
                   'network = "eth-25"\n[[node_class]]\nname = "b"\nshare = 1\ncpu = "epyc-7763"\n'
                   'memory_gib = 64\nnetwork = "eth-25"\naccelerator = "B200"\n')
    with pytest.raises(ProfileError) as e:
        load_profile(bad)
    assert str(bad) in str(e.value) and "node_class[1].accelerator" in str(e.value) and "B200" in str(e.value)
    bad.write_text("name = \n")
    with pytest.raises(ProfileError, match=f"{bad}: not valid TOML"):
        load_profile(bad)
    with pytest.raises(ProfileError, match=r"mix\.power_caps"):
        parse_profile('[[node_class]]\nname="a"\nshare=1\ncpu="power9"\nmemory_gib=8\nnetwork="eth-25"\n'
                      '[mix]\npower_caps=[1.5]\n', "p.toml")
    with pytest.raises(ProfileError, match=r"p.toml: mix.bogus"):
        parse_profile('[[node_class]]\nname="a"\nshare=1\ncpu="power9"\nmemory_gib=8\nnetwork="eth-25"\n'
                      '[mix]\nbogus=1\n', "p.toml")
    with pytest.raises(ProfileError, match=r"p.toml: mix.cpus_per_device: .*cores per device 0"):
        parse_profile('[[node_class]]\nname="a"\nshare=1\ncpu="power9"\nmemory_gib=8\nnetwork="eth-25"\n'
                      '[mix]\ncpus_per_device=[0, 4]\n', "p.toml")
    r = run_cli(["simulate", "--nodes", "2", "--days", "0.01", "--profile", str(tmp_path / "missing.toml"),
                 "--store", f"embedded:{tmp_path / 's'}"])
    assert r.returncode == 2 and "missing.toml: cannot read" in r.stderr


def test_performance_curves_by_hand():
    assert wl.power_time_factor("V100", 1.0) == 1.0
    assert wl.power_time_factor("V100", 0.5) == pytest.approx(1 + 0.2048)  # (1/0.5 - 1)**p = 1
    assert wl.power_time_factor("H100", 0.5) == pytest.approx(1 + 0.4048)
    x1 = 1_281_167 / 3514.987  # ResNet-50 on one V100, samples/s
    assert wl.device_throughput("imagenet/resnet50", "V100") == pytest.approx(x1)
    assert wl.device_throughput("imagenet/resnet50", "A100") == pytest.approx(x1 * 2.2)
    # 4 V100 in one node: X1*4 / (1 + 0.010*3 + 0.0002*9); 64 cores * 250 samples/s never limit it
    t = wl.training_truth("imagenet/resnet50", "V100", 4, 1, 25e9, 1.0, 64)
    assert t.throughput == pytest.approx(x1 * 4 / 1.0318) and t.bottleneck == "gpu_compute"
    # 4 cores on 4 H100s: 1000 samples/s of input, far below what the GPUs would take
    t = wl.training_truth("imagenet/resnet50", "H100", 4, 1, 50e9, 1.0, 4)
    assert t.throughput == 1000.0 and t.bottleneck == "cpu_input"
    # 32 recsys devices over 4 HDR nodes: 1 + (0.03+0.06)*31 + 0.001*961 -> communication dominates
    t = wl.training_truth("movielens-1m/ncf", "A100", 32, 4, 25e9, 1.0, 256)
    assert t.bottleneck == "network"
    # heavy augmentation (3x the CPU per image) on 16 cores: 250 / 3 * 16 = 1333 samples/s, below the
    # 4 A100s' 4 * 2.2 * x1 / (1 + 0.010*3 + 0.0002*9) = 3,027 samples/s
    t = wl.training_truth("imagenet/resnet50", "A100", 4, 1, 25e9, 1.0, 16, augment_cost=3.0)
    assert t.throughput == pytest.approx(250 / 3 * 16) and t.bottleneck == "cpu_input"
    assert t.gpu_bound == pytest.approx(4 * 2.2 * x1 / 1.0318)
    # 8 CNN devices on 2 nodes over TCP on the 25 GbE eth0: b = 0.010 + 0.020 * 25e9 / 3.125e9 = 0.17,
    # overhead 0.17 * 7 + 0.0002 * 49 = 1.1998 > 1: more than half of each step communicates
    t = wl.training_truth("cifar100/shufflenetv2", "V100", 8, 2, 25e9 / 8, 1.0, 128)
    assert t.bottleneck == "network" and t.compute_fraction == pytest.approx(1 / 2.1998)
    assert t.comm_fraction == pytest.approx(1.1998 / 2.1998)
    # the same job on HDR: 1 + 0.03 * 7 + 0.0098 = 1.2198, compute-bound
    assert wl.training_truth("cifar100/shufflenetv2", "V100", 8, 2, 25e9, 1.0, 128).bottleneck == "gpu_compute"


def test_arrival_growth_by_hand_and_in_the_plan():
    from agents.simulate.scheduler import WEEK_SECONDS, arrival_seconds

    assert arrival_seconds(12345.0, 0.0) == 12345.0  # no growth: the draws of before, unchanged
    # rate lam (1 + g t / W) integrates to lam (t + g t^2 / (2 W)): at g = 0.1, one week is 1.05 weeks of
    # arrivals at the starting rate
    assert arrival_seconds(1.05 * WEEK_SECONDS, 0.1) == pytest.approx(WEEK_SECONDS)
    assert arrival_seconds(4 * WEEK_SECONDS, 1.0) == pytest.approx(2 * WEEK_SECONDS)  # 2 + 1 * 2^2 / 2 = 4
    # shrinking by half the rate per week: zero after 2 weeks, when the integral reaches 2 - 0.5 * 4 / 2 = 1 week
    assert arrival_seconds(0.99 * WEEK_SECONDS, -0.5) < 2 * WEEK_SECONDS
    assert arrival_seconds(1.01 * WEEK_SECONDS, -0.5) is None

    def weekly_arrivals(growth: float) -> tuple[int, int]:
        prof = load_profile(None).model_copy(deep=True)
        prof.mix.gpu_growth_per_week = prof.mix.cpu_growth_per_week = growth
        _, _, jobs, rounds = plan(24, 14, 600, 3, prof)
        week = rounds // 2
        arrivals = [j.arrival for j in jobs if j.kind in ("training", "idle", "cpu_batch", "etl")]
        return sum(a < week for a in arrivals), sum(a >= week for a in arrivals)

    # expected ratio of week 2 to week 1: (1 + 0.5 * 1.5) / (1 + 0.5 * 0.5) = 1.4; ~1,000 arrivals a week
    first, second = weekly_arrivals(0.5)
    assert first > 800 and 1.25 < second / first < 1.55
    first, second = weekly_arrivals(0.0)
    assert 0.9 < second / first < 1.1
    # deterministic per seed, growth included
    assert plan(8, 3, 600, 5)[2] == plan(8, 3, 600, 5)[2]


def test_tcp_fallback_and_tapered_spine_show_in_the_series(tmp_path):
    prof = load_profile(None).model_copy(deep=True)
    prof.mix.multi_node_probability = 1.0
    prof.mix.no_rdma_probability = 0.5
    for c in prof.node_class:
        if c.name == "a100-epyc":
            c.leaf_nodes = 1  # every multi-node A100 job spans leaf switches of the 2:1 spine
    tables, truth = _run_with_truth(tmp_path, 4, nodes=24, days=1, profile=prof)
    net = tables["net"].to_pandas()
    ib = tables["infiniband"].to_pandas()
    ib["wait_rate"] = ib.groupby("host")["xmit_wait"].diff() / 300

    def during(df, j, col):
        rows = df[df["host"].isin(j["hosts"]) & (df["time"] > _ts(j["start_seconds"]))
                  & (df["time"] < _ts(j["end_seconds"]))]
        return float(rows[col].median())

    seen = {"tcp": 0, "tapered": 0, "rdma": 0}
    for j in truth["jobs"]:
        if not (j.get("placed") and j["kind"] == "training" and len(j["hosts"]) > 1):
            continue
        if j["end_seconds"] - j["start_seconds"] < 3 * 300:
            continue
        slow = 0.7 if j["straggler"] else 1.0
        cf = j["true_utilization"] / 0.97 / slow  # compute share of the time
        # communication share: overhead x compute share, overhead = X1 n / gpu_bound - 1 (1 - cf unless the
        # input pipeline slows the steps down)
        comm = (j["throughput"] / slow / cf / j["gpu_bound_throughput"] - 1) * cf
        if not j["rdma"]:
            seen["tcp"] += 1
            assert j["network_bytes_per_second"] == 25e9 / 8 and j["oversubscription"] == 1.0
            # collectives on eth0 at 80% of the 25 GbE line rate while they run, IB carries only Lustre
            assert during(net, j, "rx_bytes_per_second") == pytest.approx(25e9 / 8 * 0.8 * comm, rel=0.05)
            assert during(ib, j, "xmit_bytes_per_second") < 2e7
        else:
            link = 50e9 if j["node_class"] == "h100-grace" else 25e9  # NDR, else HDR
            taper = 2.0 if j["node_class"] == "a100-epyc" else 1.0
            assert j["oversubscription"] == taper and j["network_bytes_per_second"] == link / taper
            xmit = during(ib, j, "xmit_bytes_per_second")
            assert xmit == pytest.approx(link / taper * 0.8 * comm + 2e6 + 1e4, rel=0.05)
            wait = during(ib, j, "wait_rate")
            if taper > 1:
                seen["tapered"] += 1
                # credits missing for (1 - 1/2) of the time it sends: 0.5 * comm * 2e7 ticks per second
                assert wait == pytest.approx(0.5 * comm * 2e7, rel=0.05)
            else:
                seen["rdma"] += 1
                assert wait < 1e5
    assert min(seen.values()) >= 1, seen


def test_zeus_anchors_match_the_data():
    folder = require_data("zeus")
    derived = wl.zeus_anchors(folder)
    for workload, per_gpu in wl.ZEUS_SECONDS_PER_EPOCH.items():
        for gpu, seconds in per_gpu.items():
            assert derived[workload][gpu] == pytest.approx(seconds, rel=1e-3), (workload, gpu)


def test_embedded_store_end_to_end(tmp_path):
    import duckdb

    store = tmp_path / "store"
    r = run_cli(["simulate", "--nodes", "6", "--days", "0.1", "--interval", "300", "--seed", "2",
                 "--store", f"embedded:{store}"])
    assert r.returncode == 0, r.stderr
    truth = json.loads((store / "truth.json").read_text())
    assert truth["seed"] == 2 and truth["node_count"] == 6 and len(truth["nodes"]) == 6
    files = sorted(str(p) for p in (store / "cpu").rglob("*.parquet"))
    assert files
    n = duckdb.connect().execute(f"SELECT count(*), count(DISTINCT host) FROM read_parquet({files!r})").fetchone()
    rounds = round(0.1 * 86400 / 300)  # 28.8 -> 29
    assert n == (6 * rounds, 6)


def test_influxdb_store(influxdb_server):
    from tests.store_helpers import influx_query

    r = simulate(nodes=3, days=0.02, interval=300, seed=9, store=f"influxdb://{influxdb_server.url[7:]}/sim")
    rounds = r.rounds
    assert rounds == 6
    answer = influx_query(influxdb_server.url, 'SELECT count("busy_ratio") FROM "cpu"', db="sim")
    # busy_ratio is a rate: absent on the very first round of each node
    assert answer["results"][0]["series"][0]["values"][0][1] == 3 * (rounds - 1)
    answer = influx_query(influxdb_server.url, 'SELECT count("context_switches") FROM "system"', db="sim")
    assert answer["results"][0]["series"][0]["values"][0][1] == 3 * rounds
    assert r.rows_by_measurement["cpu"] == 3 * rounds


def test_stragglers_and_input_bound_jobs_show_in_the_series(tmp_path):
    prof = load_profile(None).model_copy(deep=True)
    prof.mix.straggler_probability = 1.0
    tables, truth = _run_with_truth(tmp_path, 21, nodes=14, days=1, profile=prof)
    gpu = tables["gpu"].to_pandas()
    job = tables["job"].to_pandas()
    stragglers = [j for j in truth["jobs"] if j["placed"] and j["straggler"]]
    assert stragglers
    for j in stragglers:
        sg = j["straggler_gpu"]
        rows = gpu[(gpu["host"] == sg["host"]) & (gpu["gpu"] == str(sg["gpu"]))
                   & (gpu["time"] >= _ts(j["start_seconds"])) & (gpu["time"] < _ts(j["end_seconds"]))]
        assert len(rows)
        if rows["vendor"].iloc[0] == "nvidia":
            assert ((rows["throttle_reasons"].astype("int64") & 0x40) > 0).all()  # HW thermal slowdown
        else:  # amdgpu has no throttle reasons: the clock shows it
            assert rows["throttle_reasons"].isna().all()
        from agents.simulate.hardware import ACCELERATORS

        acc = ACCELERATORS[j["accelerator"]]
        expected = acc.max_clock_hertz * min(1.0, j["power_cap_fraction"] ** 0.35) * 0.7
        assert rows["sm_clock_hertz"].to_numpy() == pytest.approx(expected)
    cpu_bound = [j for j in truth["jobs"] if j.get("bottleneck") == "cpu_input"]
    assert cpu_bound
    for j in cpu_bound:
        rows = job[job["job"] == j["job"]]
        assert (rows["cpu_cores"].dropna() / rows["cpus_allocated"].iloc[0]).median() > 0.9


def _ts(seconds: float):
    import pandas as pd

    return pd.Timestamp(_start_ns() + int(seconds * 1e9), tz="UTC")
