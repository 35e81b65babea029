"""Writing to a real influxd from tests without the production writer: CREATE DATABASE and /write."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable

from agents.points import Point


def influx_query(base_url: str, q: str, db: str | None = None) -> dict:
    params = {"q": q, **({"db": db} if db else {})}
    with urllib.request.urlopen(base_url + "/query", data=urllib.parse.urlencode(params).encode(), timeout=30) as r:
        return json.loads(r.read())


def create_database(base_url: str, db: str, timeout: float = 30.0) -> None:
    """CREATE DATABASE and wait until influxd lists it: a server just started under load has been seen to
    answer the first write with 404 "database not found"."""
    deadline = time.monotonic() + timeout
    while True:
        answer = influx_query(base_url, f'CREATE DATABASE "{db}"')
        listed = influx_query(base_url, "SHOW DATABASES")["results"][0].get("series", [{}])[0].get("values", [])
        if [db] in listed:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"influxd did not create database {db!r}: {answer}")
        time.sleep(0.2)


def write_lines(base_url: str, db: str, lines: Iterable[str]) -> None:
    body = "\n".join(lines).encode()
    req = urllib.request.Request(f"{base_url}/write?db={urllib.parse.quote(db)}&precision=ns", data=body,
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            assert r.status == 204, r.status
    except urllib.error.HTTPError as e:
        raise AssertionError(f"influxd refused the write: {e.code} {e.read()!r}") from None


def write_points(base_url: str, db: str, points: Iterable[Point]) -> None:
    write_lines(base_url, db, [p.to_line() for p in points])
