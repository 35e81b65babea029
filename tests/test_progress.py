"""Progress lines for long runs (analyzer.progress)."""

from __future__ import annotations

import io

from analyzer.progress import Progress


def test_a_pipe_gets_a_first_and_a_last_line_not_one_per_step():
    out = io.StringIO()                     # not a terminal: plain lines, at most one per every_s
    p = Progress("packing fgd", stream=out, every_s=3600)
    for i in range(1, 101):
        p(i, 100)
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("packing fgd: 1/100 (1%)")
    assert lines[1].startswith("packing fgd: 100/100 (100%)")


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_redrawn_in_place_and_a_newline_at_the_end():
    out = _Tty()
    p = Progress("x", stream=out, width=10)
    p(5, 10)
    p(10, 10)
    text = out.getvalue()
    assert text.startswith("\rx [#####     ] 5/10")
    assert "\rx [##########] 10/10" in text and text.endswith("\n") and text.count("\n") == 1
