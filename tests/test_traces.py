"""Trace loaders on the real public files, through the embedded store, and on corrupted copies.

Facts about the real files are computed here independently with the csv module; corrupted copies are
written into tmp_path from the real files' first rows, so the skip counts below are exact by design.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import zlib
from collections import Counter
from pathlib import Path

import pytest

from agents.traces import DEFAULT_EPOCH, ingest, parse_epoch
from agents.traces.report import TraceFormatError
from tests.conftest import require_data
from tests.helpers import run_cli
from tests.schema_check import assert_schema

EPOCH_NS = parse_epoch(DEFAULT_EPOCH)
NS = 1_000_000_000
DUTY = "pod_gpu_duty_cycle_anon.csv.gz"
MEMORY = "pod_gpu_memory_used_bytes_anon.csv.gz"


class ListSink:
    def __init__(self) -> None:
        self.points = []

    def write(self, points) -> int:
        self.points.extend(points)
        return len(points)

    def close(self) -> None:
        pass


def _rows(path: Path, header: bool = True) -> list[dict] | list[list[str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", newline="") as f:
        return list(csv.DictReader(f)) if header else list(csv.reader(f))


def _load(kind: str, path: Path, epoch: str | None = None):
    sink = ListSink()
    report = ingest(kind, path, sink, epoch=epoch)
    return report, sink.points


# ---------------------------------------------------------------- real files


@pytest.fixture(scope="module")
def genai():
    path = require_data("alibaba-genai-2026")
    report, points = _load("alibaba-genai", path)
    return path, report, points


def test_genai_real_files(genai):
    path, report, points = genai
    duty, memory = _rows(path / DUTY), _rows(path / MEMORY)
    assert (len(duty), len({r["container_ip"] for r in duty}), len(memory)) == (157_417, 143, 161_413)
    by_file = {Path(f.path).name: f for f in report.files}
    assert by_file[DUTY].rows_read == by_file[DUTY].rows_written == 157_417
    assert by_file[MEMORY].rows_read == by_file[MEMORY].rows_written == 161_413
    assert not report.skipped and report.points_written == len(points) == 157_417 + 161_413

    util = [p for p in points if "utilization_ratio" in p.fields]
    mem = [p for p in points if "memory_used_bytes" in p.fields]
    assert len(util) == 157_417 and len(mem) == 161_413
    assert len({p.tags["job"] for p in util}) == 143
    assert len({p.tags["job"] for p in mem}) == len({r["container_ip"] for r in memory})
    # The memory file puts timestamp first and value second: read by name, bytes stay bytes.
    assert max(p.fields["memory_used_bytes"] for p in mem) == round(max(float(r["value"]) for r in memory))
    first = memory[0]
    assert mem[0].fields["memory_used_bytes"] == round(float(first["value"]))
    assert mem[0].time_ns == int(float(first["timestamp_anon"])) * NS
    assert mem[0].tags == {"host": "alibaba-genai", "job": first["container_ip"], "scheduler": "kubernetes",
                           "user": "", "gpu": "0", "uuid": ""}
    assert sum(p.fields["utilization_ratio"] for p in util) == pytest.approx(
        sum(float(r["value"]) for r in duty) / 100)
    assert max(p.fields["utilization_ratio"] for p in util) == max(float(r["value"]) for r in duty) / 100 <= 1
    assert_schema(points[:2000] + points[-2000:])


def test_openb_real_files():
    path = require_data("alibaba-gpu-2023")
    report, points = _load("alibaba-openb", path)
    nodes, pods = _rows(path / "openb_node_list_all_node.csv"), _rows(path / "openb_pod_list_default.csv")
    assert (len(nodes), len(pods)) == (1_523, 8_152)
    assert (report.rows_read, report.rows_written, dict(report.skipped)) == (1_523 + 8_152, 1_523 + 8_152, {})
    inv = [p for p in points if p.measurement == "node_inventory"]
    req = [p for p in points if p.measurement == "job_request"]
    assert (len(inv), len(req)) == (1_523, 8_152)
    assert sum(p.fields["gpus"] for p in inv) == sum(int(r["gpu"]) for r in nodes)
    assert Counter(p.tags["gpu_model"] for p in inv) == Counter(r["model"] for r in nodes)
    assert {p.time_ns for p in inv} == {EPOCH_NS}
    node = next(p for p in inv if p.tags["host"] == nodes[0]["sn"])
    assert node.fields == {"cpu_cores": int(nodes[0]["cpu_milli"]) / 1000,
                           "memory_bytes": int(nodes[0]["memory_mib"]) * 2**20, "gpus": int(nodes[0]["gpu"])}

    pod = pods[1]  # openb-pod-0001 shares a GPU: gpu_milli 460
    p = next(p for p in req if p.tags["job"] == pod["name"])
    assert p.fields["gpu_fraction"] == int(pod["gpu_milli"]) / 1000 == 0.46
    assert p.time_ns == EPOCH_NS + int(pod["creation_time"]) * NS
    assert p.fields["creation_time_seconds"] == EPOCH_NS / NS + int(pod["creation_time"])
    assert p.fields["deletion_time_seconds"] == EPOCH_NS / NS + int(pod["deletion_time"])
    assert p.fields["phase"] == pod["pod_phase"] and p.tags["qos"] == pod["qos"]
    never_placed = sum(1 for r in pods if r["scheduled_time"] == "")
    assert never_placed > 0
    assert sum(1 for p in req if "scheduled_time_seconds" not in p.fields) == never_placed
    assert sum(p.fields["gpus"] for p in req) == sum(int(r["num_gpu"]) for r in pods)
    assert_schema(points)


def test_pai_real_file():
    path = require_data("alibaba-pai-2020", "pai_machine_spec.csv")
    report, points = _load("alibaba-pai-spec", path.parent)
    rows = _rows(path, header=False)
    assert len(rows) == 1_897 and sum(int(r[4]) for r in rows) == 6_742
    assert (report.rows_read, report.rows_written) == (1_897, 1_897)
    assert len(points) == 1_897 and sum(p.fields["gpus"] for p in points) == 6_742
    first = points[0]
    assert first.tags == {"host": rows[0][0], "gpu_model": "" if rows[0][1] == "CPU" else rows[0][1], "arch": "",
                          "pool": "alibaba-pai"}
    assert first.fields["memory_bytes"] == int(rows[0][3]) * 2**30
    assert Counter(p.tags["gpu_model"] for p in points) == Counter("" if r[1] == "CPU" else r[1] for r in rows)
    assert_schema(points)


def test_zeus_real_files():
    path = require_data("zeus")
    report, points = _load("zeus", path)
    files = sorted(path.glob("summary_power_*.csv"))
    assert [Path(f.path).name for f in report.files] == [f.name for f in files]
    for f, fr in zip(files, report.files, strict=True):
        rows = _rows(f)
        assert fr.rows_read == fr.rows_written == len(rows) > 0
        gpu = f.stem.split("_")[-1].upper()
        mine = [p for p in points if p.tags["gpu_model"] == gpu]
        assert len(mine) == len(rows)
        r, p = rows[3], mine[3]
        assert p.tags == {"host": "zeus", "workload": f"{r['dataset']}/{r['network']}", "gpu_model": gpu,
                          "optimizer": r["optimizer"]}
        assert p.fields["batch_size"] == int(r["batch_size"])
        assert p.fields["energy_per_epoch_joules"] == pytest.approx(
            float(r["time_per_epoch"]) * float(r["average_power"]))
        assert p.time_ns == EPOCH_NS + 3 * NS
    series_times = [(tuple(sorted(p.tags.items())), p.time_ns) for p in points]
    assert len(set(series_times)) == len(points)
    assert_schema(points)


# ---------------------------------------------------------------- corrupted copies


def _head(path: Path, n: int) -> list[str]:
    with gzip.open(path, "rt") as f:
        return [next(f).rstrip("\n") for _ in range(n + 1)]  # header + n rows


def test_genai_corrupted_rows_are_counted_by_reason(tmp_path):
    real = require_data("alibaba-genai-2026", DUTY)
    lines = _head(real, 10)
    ts = lines[1].split(",")[1]
    bad = [
        f"abc,{ts},podx",          # non_numeric
        f",{ts},podx",             # missing_value
        f"250.0,{ts},podx",        # percent_over_100
        f"-1.0,{ts},podx",         # negative
        f"5.0,{ts}",               # missing_value (short row)
        f"5.0,{ts},podx,extra",    # extra_fields
        f"nan,{ts},podx",          # non_numeric
        f"7.0,{ts},",              # missing_value (no pod)
        "7.0,garbage,podx",        # non_numeric (timestamp)
        lines[1],                  # duplicate of the first sample
        f'7.0,{ts},"pod\nx"',     # unwritable_text: line protocol cannot carry a newline in a tag
    ]
    (tmp_path / DUTY).write_bytes(gzip.compress(("\n".join(lines + bad) + "\n").encode()))
    report, points = _load("alibaba-genai", tmp_path)
    assert report.rows_read == 21 and report.rows_written == 10 == len(points)
    assert dict(report.skipped) == {"non_numeric": 3, "missing_value": 3, "percent_over_100": 1, "negative": 1,
                                    "extra_fields": 1, "duplicate": 1, "unwritable_text": 1}
    assert all(p.tags["job"] != "podx" for p in points)


def test_genai_truncated_gzip_keeps_complete_rows(tmp_path):
    real = require_data("alibaba-genai-2026", MEMORY)
    lines = _head(real, 30)
    # Full flush after 20 rows and half of the 21st, then the stream stops: exactly that much decodes.
    kept = "\n".join(lines[:21]) + "\n" + lines[21][:15]
    comp = zlib.compressobj(wbits=31)
    head = comp.compress(kept.encode()) + comp.flush(zlib.Z_FULL_FLUSH)
    (tmp_path / MEMORY).write_bytes(head)
    report, points = _load("alibaba-genai", tmp_path / MEMORY)
    assert (report.rows_read, report.rows_written, dict(report.skipped)) == (21, 20, {"truncated": 1})
    assert "gzip stream is damaged" in report.files[0].warnings[0]
    assert [p.fields["memory_used_bytes"] for p in points] == [round(float(x.split(",")[1])) for x in lines[1:21]]


def test_openb_corrupted_pods(tmp_path):
    real = require_data("alibaba-gpu-2023", "openb_pod_list_default.csv")
    lines = real.read_text().splitlines()[:6]
    good = lines[1].split(",")

    def variant(**changes):
        cols = lines[0].split(",")
        row = list(good)
        for key, value in changes.items():
            row[cols.index(key)] = value
        return ",".join(row)

    bad = [
        variant(name="openb-pod-x1", gpu_milli="1500"),        # out_of_range
        variant(name="openb-pod-x2", num_gpu="1.5"),           # non_integer
        variant(name=""),                                      # missing_value
        variant(name="openb-pod-x3", cpu_milli="-4000"),       # negative
        variant(name="openb-pod-x4", creation_time="soon"),    # non_numeric
        variant(name="openb-pod-x5", scheduled_time="", pod_phase="Pending"),  # valid: never placed
    ]
    f = tmp_path / "openb_pod_list_default.csv"
    f.write_text("\n".join(lines + bad) + "\n")
    report, points = _load("alibaba-openb", f, epoch="1000")
    assert (report.rows_read, report.rows_written) == (11, 6)
    assert dict(report.skipped) == {"out_of_range": 1, "non_integer": 1, "missing_value": 1, "negative": 1,
                                    "non_numeric": 1}
    pending = next(p for p in points if p.tags["job"] == "openb-pod-x5")
    assert "scheduled_time_seconds" not in pending.fields and pending.fields["phase"] == "Pending"
    assert pending.time_ns == (1000 + int(good[8])) * NS
    assert_schema(points)


def test_pai_and_zeus_corrupted(tmp_path):
    real = require_data("alibaba-pai-2020", "pai_machine_spec.csv")
    lines = real.read_text().splitlines()[:4]
    (tmp_path / "pai_machine_spec.csv").write_text("\n".join(
        [*lines, "m1,T4,96,512", "m2,T4,96,512,x", "m3,T4,96,-512,2", lines[0]]) + "\n")
    report, points = _load("alibaba-pai-spec", tmp_path)
    assert (report.rows_read, report.rows_written) == (8, 4)
    assert dict(report.skipped) == {"missing_value": 1, "non_numeric": 1, "negative": 1, "duplicate": 1}

    zeus = require_data("zeus", "summary_power_v100.csv")
    zl = zeus.read_text().splitlines()[:5]
    (tmp_path / "summary_power_v100.csv").write_text("\n".join(
        [zl[0] + ",note"] + [r + ",x" for r in zl[1:]] + [zl[1].replace(",adadelta,", ",,") + ",x"]) + "\n")
    report, points = _load("zeus", tmp_path / "summary_power_v100.csv")
    assert (report.rows_read, report.rows_written, dict(report.skipped)) == (5, 4, {"missing_value": 1})
    assert "'note'" in report.files[0].warnings[0]
    assert [p.fields["power_limit_watts"] for p in points] == [float(r.split(",")[4]) for r in zl[1:]]


def test_missing_required_column_is_exit_2(tmp_path):
    real = require_data("alibaba-genai-2026", MEMORY)
    lines = _head(real, 3)
    lines[0] = "timestamp_anon,value,pod"
    (tmp_path / MEMORY).write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(TraceFormatError, match="container_ip"):
        _load("alibaba-genai", tmp_path)
    result = run_cli(["ingest", "alibaba-genai", str(tmp_path), "--store", f"embedded:{tmp_path / 'store'}"])
    assert result.returncode == 2
    assert MEMORY in result.stderr and "'container_ip'" in result.stderr
    (tmp_path / "pai_machine_spec.csv").write_text("m1,T4,96\n")
    result = run_cli(["ingest", "alibaba-pai-spec", str(tmp_path / "pai_machine_spec.csv")], cwd=tmp_path)
    assert result.returncode == 2 and "'cap_mem'" in result.stderr
    result = run_cli(["ingest", "zeus", str(tmp_path), "--epoch", "yesterday"], cwd=tmp_path)
    assert result.returncode == 2 and "--epoch 'yesterday'" in result.stderr
    result = run_cli(["ingest", "zeus", str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 2 and "summary_power" in result.stderr


def test_parse_epoch():
    assert parse_epoch("2023-01-01T00:00:00Z") == 1_672_531_200 * NS
    assert parse_epoch("2023-01-01T01:00:00+01:00") == 1_672_531_200 * NS
    assert parse_epoch("2023-01-01") == 1_672_531_200 * NS
    assert parse_epoch("1672531200") == 1_672_531_200 * NS
    for bad in ("yesterday", "nan", "inf"):
        with pytest.raises(TraceFormatError):
            parse_epoch(bad)


# ---------------------------------------------------------------- through the embedded store


def test_cli_json_report_and_embedded_round_trip(tmp_path):
    import duckdb

    zeus = require_data("zeus")
    pai = require_data("alibaba-pai-2020")
    result = run_cli(["ingest", "zeus", str(zeus), "--format", "json"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    n_zeus = sum(len(_rows(f)) for f in zeus.glob("summary_power_*.csv"))
    assert report["rows_read"] == report["rows_written"] == report["points_written"] == n_zeus
    assert report["skipped"] == {} and report["store"] == "embedded:./var/store"
    result = run_cli(["ingest", "alibaba-pai-spec", str(pai), "--store", "embedded:./var/store"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "written 1897" in result.stdout

    store = tmp_path / "var" / "store"
    files = [str(p) for p in store.rglob("*.parquet")]
    assert files, f"nothing written under {store}"
    con = duckdb.connect()
    v100 = _rows(zeus / "summary_power_v100.csv")
    got = con.execute(
        "SELECT count(*), sum(batch_size), sum(energy_per_epoch_joules) FROM read_parquet(?, union_by_name=true) "
        "WHERE gpu_model = 'V100' AND workload IS NOT NULL", [[f for f in files if "workload_profile" in f]]
    ).fetchone()
    assert got[0] == len(v100) and got[1] == sum(int(r["batch_size"]) for r in v100)
    assert got[2] == pytest.approx(sum(float(r["time_per_epoch"]) * float(r["average_power"]) for r in v100))
    inv = con.execute(
        "SELECT count(*), sum(gpus), sum(memory_bytes) FROM read_parquet(?, union_by_name=true)",
        [[f for f in files if "node_inventory" in f]]
    ).fetchone()
    rows = _rows(pai / "pai_machine_spec.csv", header=False)
    assert inv == (1_897, 6_742, sum(int(r[3]) for r in rows) * 2**30)


def test_genai_through_embedded_store(tmp_path, genai):
    import duckdb

    from agents.stores.writers import open_writer

    path, expected, _ = genai
    sink = open_writer(f"embedded:{tmp_path / 'store'}")
    assert sink.url.kind == "embedded"
    report = ingest("alibaba-genai", path, sink)
    sink.close()
    assert report.points_written == expected.rows_written == 157_417 + 161_413
    files = [str(p) for p in (tmp_path / "store").rglob("*.parquet") if "job_gpu" in str(p)]
    got = con_fetch(duckdb, files)
    duty, memory = _rows(path / DUTY), _rows(path / MEMORY)
    assert got[0] == 157_417 and got[1] == 161_413 and got[2] == 143
    assert got[3] == pytest.approx(sum(float(r["value"]) for r in duty) / 100)
    assert got[4] == sum(round(float(r["value"])) for r in memory)


def con_fetch(duckdb, files):
    return duckdb.connect().execute(
        "SELECT count(utilization_ratio), count(memory_used_bytes), "
        "count(DISTINCT CASE WHEN utilization_ratio IS NOT NULL THEN job END), "
        "sum(utilization_ratio), sum(memory_used_bytes)::HUGEINT FROM read_parquet(?, union_by_name=true)", [files]
    ).fetchone()


def test_report_text_lists_reasons(tmp_path):
    real = require_data("alibaba-genai-2026", DUTY)
    lines = _head(real, 2)
    (tmp_path / DUTY).write_bytes(gzip.compress(("\n".join([*lines, "101,1,p"]) + "\n").encode()))
    report, _ = _load("alibaba-genai", tmp_path)
    text = report.to_text()
    assert "read 3, written 2, skipped 1" in text and "skipped percent_over_100: 1" in text
    assert json.loads(report.to_json())["skipped"] == {"percent_over_100": 1}
    assert io.StringIO(text).readline().startswith("ingest alibaba-genai")


def test_real_gzip_cut_in_half_keeps_the_rows_before_the_cut(tmp_path, genai):
    path, _, _ = genai
    raw = (path / DUTY).read_bytes()
    (tmp_path / DUTY).write_bytes(raw[: len(raw) // 2])
    report, points = _load("alibaba-genai", tmp_path)
    fr = report.files[0]
    assert fr.rows_read == fr.rows_written + fr.skipped["truncated"] and set(fr.skipped) <= {"truncated"}
    assert 0 < fr.rows_written < 157_417
    duty = _rows(path / DUTY)[: fr.rows_written]
    assert [p.fields["utilization_ratio"] for p in points] == [float(r["value"]) / 100 for r in duty]
    assert [p.tags["job"] for p in points] == [r["container_ip"] for r in duty]


def test_openb_into_real_influxdb(influxdb_server, tmp_path):
    from agents.stores.influxdb import InfluxV1Writer
    from agents.stores.url import parse_store_url

    path = require_data("alibaba-gpu-2023")
    url = influxdb_server.url.replace("http://", "influxdb://") + "/traces"
    result = run_cli(["ingest", "alibaba-openb", str(path), "--store", url, "--format", "json"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["points_written"] == 1_523 + 8_152
    client = InfluxV1Writer(parse_store_url(url), create_database=False)
    try:
        answer = client.query('SELECT count("gpus"), sum("gpus") FROM "node_inventory"')
        count, total = answer["results"][0]["series"][0]["values"][0][1:]
        nodes = _rows(path / "openb_node_list_all_node.csv")
        assert (count, total) == (1_523, sum(int(r["gpu"]) for r in nodes))
        answer = client.query('SELECT count("gpu_fraction") FROM "job_request" WHERE "qos" = \'LS\'')
        pods = _rows(path / "openb_pod_list_default.csv")
        assert answer["results"][0]["series"][0]["values"][0][1] == sum(1 for r in pods if r["qos"] == "LS")
    finally:
        client.close()


def test_unreachable_influxdb_is_exit_1(tmp_path):
    from tests.helpers import free_port

    path = require_data("alibaba-pai-2020")
    result = run_cli(["ingest", "alibaba-pai-spec", str(path), "--store", f"influxdb://127.0.0.1:{free_port()}/x"],
                     cwd=tmp_path, env={**os.environ, "FLEETWISE_STORE__GIVE_UP_SECONDS": "1"})
    assert result.returncode == 1 and "did not take a batch within give_up_seconds=1" in result.stderr
    assert "Connection refused" in result.stderr
    assert "Traceback" not in result.stderr
