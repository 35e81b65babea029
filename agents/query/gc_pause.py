"""Pausing Python's cyclic garbage collector while an answer is decoded into rows.

Decoding an InfluxDB answer builds a Python list for every row (a week of a fleet's per-host figures is
several hundred thousand), none of them part of a reference cycle: reference counting frees them all once
the rows are turned into arrays. Each 700 new containers start a collection, and the older generations get
scanned as the rows pile up, so in a process that already holds much (the dashboard's caches, a loaded
run) the collector took about as long as the decoding itself: 0.7 s of the 1.9 s of Python CPU the week's
fleet page spent on InfluxDB (docs/benchmarks.md). Paused while decoding, it catches up when resumed.

The pause is counted across threads (queries decode at once on the dashboard's workers): the collector
resumes when the last decoder leaves, and only if it was enabled when the first one came in.
"""

from __future__ import annotations

import functools
import gc
import threading
from collections.abc import Callable
from typing import TypeVar

ENABLED = True  # False: decode with the collector running (bench/influx_read_paths.py measures the difference)
_lock = threading.Lock()
_depth = 0
_resume = False

T = TypeVar("T")


def _enter() -> None:
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1


def _leave() -> None:
    global _depth
    with _lock:
        _depth -= 1
        if _depth == 0 and _resume:
            gc.enable()


def gc_paused(fn: Callable[..., T]) -> Callable[..., T]:
    """fn run with the cyclic collector paused (see the module's docstring)."""

    @functools.wraps(fn)
    def run(*args, **kwargs) -> T:
        if not ENABLED:
            return fn(*args, **kwargs)
        _enter()
        try:
            return fn(*args, **kwargs)
        finally:
            _leave()

    return run
