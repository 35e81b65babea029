import json
import math

import pytest

from agents.points import InvalidPoint, Point


def test_line_protocol_types_and_order():
    p = Point("cpu", {"host": "n1", "cpu": "total"}, {"busy_ratio": 0.5, "n": 3, "ok": True, "model": "A100"}, 42)
    assert p.to_line() == 'cpu,cpu=total,host=n1 busy_ratio=0.5,n=3i,ok=true,model="A100" 42'


def test_line_protocol_escapes():
    p = Point("my meas,x", {"tag key": "a=b,c d"}, {"field=1": 'say "hi" \\o/'}, 1)
    assert p.to_line() == r'my\ meas\,x,tag\ key=a\=b\,c\ d field\=1="say \"hi\" \\o/" 1'


def test_non_finite_floats_are_left_out():
    p = Point("m", {"host": "h"}, {"a": math.nan, "b": 1.0, "c": math.inf}, 1)
    assert p.to_line() == "m,host=h b=1.0 1"
    assert json.loads(p.to_json())["fields"] == {"b": 1.0}
    with pytest.raises(InvalidPoint, match="no field"):
        Point("m", {"host": "h"}, {"a": math.nan}, 1).to_line()


@pytest.mark.parametrize("tags", [{"host": "a\nb"}, {"ho\nst": "a"}, {"host": "ends\\"}])
def test_values_line_protocol_cannot_carry_are_rejected(tags):
    with pytest.raises(InvalidPoint):
        Point("m", tags, {"v": 1}, 1).to_line()


def test_empty_tag_values_are_omitted():
    assert Point("m", {"host": "h", "user": ""}, {"v": 1}, 5).to_line() == "m,host=h v=1i 5"
