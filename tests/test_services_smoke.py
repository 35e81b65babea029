import json
import urllib.parse
import urllib.request

from tests.services import influxd


def test_influxd_fixture_writes_and_queries(tmp_path):
    with influxd(tmp_path) as server:
        q = urllib.parse.urlencode({"q": 'CREATE DATABASE "t"'})
        urllib.request.urlopen(urllib.request.Request(f"{server.url}/query?{q}", method="POST"), timeout=10)
        body = b"m,host=a v=1.5 1000000000\nm,host=b v=2.5 1000000000"
        req = urllib.request.Request(f"{server.url}/write?db=t&precision=ns", data=body, method="POST")
        assert urllib.request.urlopen(req, timeout=10).status == 204
        q = urllib.parse.urlencode({"db": "t", "q": 'SELECT sum("v") FROM "m"'})
        result = json.load(urllib.request.urlopen(f"{server.url}/query?{q}", timeout=10))
        assert result["results"][0]["series"][0]["values"][0][1] == 4.0
