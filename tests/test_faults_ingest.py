"""`fleetwise ingest` on damaged input: absurd times, a gzip member whose checksum fails, bytes that are not
UTF-8. Each bad row is counted under its reason; nothing unverified or out of range reaches the store."""

from __future__ import annotations

import gzip
import json

import duckdb

from tests.helpers import run_cli

HEADER = b"timestamp_anon,value,container_ip\n"
DUTY = "pod_gpu_duty_cycle_anon.csv.gz"


def _stored(store) -> list[tuple[int, str, float]]:
    files = [str(p) for p in store.rglob("*.parquet")]
    if not files:
        return []
    return duckdb.connect().execute(
        "SELECT epoch_ns(time), job, utilization_ratio FROM read_parquet($f, union_by_name=true) ORDER BY job",
        {"f": files}).fetchall()


def _ingest(tmp_path, trace) -> tuple[dict, list]:
    store = tmp_path / "store"
    result = run_cli(["ingest", "alibaba-genai", str(trace), "--store", f"embedded:{store}", "--format", "json"],
                     cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout), _stored(store)


def test_times_out_of_range_are_skipped_and_counted_not_wrapped(tmp_path):
    trace = tmp_path / DUTY
    trace.write_bytes(gzip.compress(HEADER + b"1700000000,50,a\n"
                                             b"10000000000000,60,b\n"      # 1e13 s: year 318,857
                                             b"1700000060,70,c\n"
                                             b"4102444800,80,d\n"          # 2100-01-01: the first refused second
                                             b"4102444799,90,e\n"))        # the last accepted one
    report, rows = _ingest(tmp_path, trace)
    assert report["skipped"] == {"time_out_of_range": 2}
    assert report["rows_read"] == 5 and report["rows_written"] == report["points_written"] == 3
    # Exactly the good rows, at exactly their times (ms precision; no wrap-around into year 2225).
    assert rows == [(1_700_000_000 * 10**9, "a", 0.5), (1_700_000_060 * 10**9, "c", 0.7),
                    (4_102_444_799 * 10**9, "e", 0.9)]


def test_nothing_of_a_gzip_member_with_a_bad_checksum_is_kept(tmp_path):
    good = gzip.compress(HEADER + b"1700000000,50,a\n")
    # A stored (level 0) member, so the digits are literally in the file: flip 80 to 90. It still decodes,
    # into a plausible wrong value, and only the member's CRC at its end says so.
    damaged = bytearray(gzip.compress(b"1700000060,70,c\n1700000120,80,e\n", compresslevel=0))
    at = damaged.index(b"1700000120,80") + len(b"1700000120,")
    damaged[at] = ord("9")
    trace = tmp_path / DUTY
    trace.write_bytes(good + bytes(damaged))
    report, rows = _ingest(tmp_path, trace)
    assert rows == [(1_700_000_000 * 10**9, "a", 0.5)]  # neither c nor the garbled e
    [warning] = report["files"][0]["warnings"]
    assert "incorrect data check" in warning and "nothing of the damaged gzip member is kept" in warning


def test_lines_that_are_not_utf8_are_counted_and_the_rest_ingested(tmp_path):
    trace = tmp_path / DUTY
    trace.write_bytes(gzip.compress(HEADER + b"1700000000,50,a\n1700000060,70,\xff\xfe\n1700000120,30,c\n"))
    report, rows = _ingest(tmp_path, trace)
    assert report["skipped"] == {"not_utf8": 1}
    assert report["rows_read"] == 3 and report["rows_written"] == 2
    assert [r[1] for r in rows] == ["a", "c"]
