"""Progress of long runs on stderr: a bar redrawn in place on a terminal, a log line every few seconds
otherwise (so CI logs and pipes get a readable trail rather than carriage returns)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Call with (done, total) as work advances; `label` names the run."""

    def __init__(self, label: str, stream: TextIO | None = None, every_s: float = 5.0, width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.every_s = every_s if not self.tty else 0.1
        self.width = width
        self.start = time.monotonic()
        self.last = -float("inf")

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        finished = done >= total
        if not finished and now - self.last < self.every_s:
            return
        self.last = now
        elapsed = now - self.start
        share = done / total if total else 1.0
        if self.tty:
            bar = "#" * int(share * self.width)
            self.stream.write(f"\r{self.label} [{bar:<{self.width}}] {done}/{total} {elapsed:.0f}s")
            if finished:
                self.stream.write("\n")
        else:
            self.stream.write(f"{self.label}: {done}/{total} ({share:.0%}) after {elapsed:.0f}s\n")
        self.stream.flush()
