"""agents.query.gc_pause: the collector paused while answers decode, counted across threads, and left as it
was found."""

from __future__ import annotations

import gc
import threading

import pytest

from agents.query.gc_pause import gc_paused


def test_the_collector_is_paused_inside_and_resumes_when_the_last_thread_leaves():
    inside, go = threading.Barrier(3), threading.Event()
    seen = []

    @gc_paused
    def decode():
        seen.append(gc.isenabled())
        inside.wait(timeout=30)
        go.wait(timeout=30)

    assert gc.isenabled()
    threads = [threading.Thread(target=decode) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait(timeout=30)  # both inside
    assert not gc.isenabled()
    go.set()
    for t in threads:
        t.join(timeout=30)
    assert seen == [False, False] and gc.isenabled()


def test_a_collector_disabled_before_stays_disabled_and_errors_pass_through():
    @gc_paused
    def fails():
        raise ValueError("bad answer")

    gc.disable()
    try:
        with pytest.raises(ValueError, match="bad answer"):
            fails()
        assert not gc.isenabled()
    finally:
        gc.enable()
    with pytest.raises(ValueError, match="bad answer"):
        fails()
    assert gc.isenabled()
