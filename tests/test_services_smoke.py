import json
import urllib.parse
import urllib.request

from tests.services import influxd
from tests.store_helpers import create_database, write_lines


def test_influxd_fixture_writes_and_queries(tmp_path):
    with influxd(tmp_path) as server:
        create_database(server.url, "t")
        write_lines(server.url, "t", ["m,host=a v=1.5 1000000000", "m,host=b v=2.5 1000000000"])
        q = urllib.parse.urlencode({"db": "t", "q": 'SELECT sum("v") FROM "m"'})
        result = json.load(urllib.request.urlopen(f"{server.url}/query?{q}", timeout=10))
        assert result["results"][0]["series"][0]["values"][0][1] == 4.0
