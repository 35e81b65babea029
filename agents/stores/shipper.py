"""The sender loop: drains the spool to the store oldest first, with backoff, and never lets bad data block it."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Protocol

from agents.stores.result import Outcome, SendResult
from agents.stores.spool import Batch, Spool

log = logging.getLogger("fleetwise.shipper")


class Sink(Protocol):
    format: str

    def send(self, payload: bytes, timeout: float | None = None) -> SendResult: ...

    def close(self) -> None: ...


class Unavailable(Exception):
    """The store stopped answering (RETRY) while a refused batch was being split: keep it, try later."""

    def __init__(self, result: SendResult) -> None:
        super().__init__(result.message)
        self.result = result


def isolate_rejected(send: Callable[[bytes, float | None], SendResult], lines: list[bytes], result: SendResult,
                     timeout: float | None = None) -> tuple[list[tuple[bytes, str]], int]:
    """Split a refused batch until each refused part is one line. Returns (bad lines with the reason, points
    sent). Raises Unavailable when the store answers RETRY meanwhile. Shared by the agent's shipper and the
    spool-less writer (ingest, simulate), so a malformed point is quarantined the same way everywhere."""
    if len(lines) == 1:
        return [(lines[0], result.rejected.get(lines[0], result.message))], 0
    bad: list[tuple[bytes, str]] = []
    sent = 0
    middle = len(lines) // 2
    for half in (lines[:middle], lines[middle:]):
        answer = send(b"\n".join(half), timeout)
        if answer.outcome is Outcome.OK:
            sent += len(half)
        elif answer.outcome is Outcome.RETRY:
            raise Unavailable(answer)
        else:
            more, more_sent = isolate_rejected(send, half, answer, timeout)
            bad.extend(more)
            sent += more_sent
    return bad, sent


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Exponential with "equal jitter": half the step is fixed so retries never bunch at zero, half random
    so a fleet of agents does not reconnect at the same instant after an outage."""
    step = min(cap, base * 2 ** min(attempt, 30))
    return step / 2 + (rng or random).uniform(0, step / 2)


class Shipper:
    def __init__(self, spool: Spool, sink: Sink, batch_max_points: int = 5000, flush_interval_seconds: float = 10.0,
                 retry_base_seconds: float = 1.0, retry_max_seconds: float = 60.0) -> None:
        self.spool, self.sink = spool, sink
        self.batch_max_points = batch_max_points
        self.flush_interval = flush_interval_seconds
        self.retry_base, self.retry_max = retry_base_seconds, retry_max_seconds
        self.attempt = 0
        # A sink that names what it publishes by content (the embedded store) needs every resend after a crash
        # to carry the same bytes: one spool row per batch, since rows coalesced differently after a restart
        # (a round enqueued meanwhile joins them) would get a new name and publish those rows a second time.
        self._peek_points = 1 if getattr(sink, "content_keyed", False) else batch_max_points
        self._wake = threading.Event()
        self._last_problem = ""

    def notify(self) -> None:
        """New data in the spool: re-check whether a batch is full."""
        self._wake.set()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                batch = self.spool.peek(self._peek_points)
            except Exception as exc:  # a broken spool must be visible, not kill the thread silently
                log.error("spool read failed: %s", exc)
                stop.wait(self.retry_max)
                continue
            if batch is None:
                self._sleep(stop, self.flush_interval)
                continue
            age = time.time() - batch.created
            if batch.points < self.batch_max_points and age < self.flush_interval:
                self._sleep(stop, self.flush_interval - age)
                continue
            try:
                shipped = self.ship(batch)
            except Exception as exc:  # a bug or an unexpected error must not stop shipping for good
                log.exception("shipping a batch failed unexpectedly (kept in the spool): %s", exc)
                shipped = False
            if shipped:
                self.attempt = 0
            else:
                delay = backoff_delay(self.attempt, self.retry_base, self.retry_max)
                self.attempt += 1
                stop.wait(delay)

    def flush(self, deadline: float) -> bool:
        """Send everything now (shutdown); stops at the first failure or at the deadline. True when empty."""
        while time.monotonic() < deadline:
            batch = self.spool.peek(self._peek_points)
            if batch is None:
                return True
            if not self.ship(batch, timeout=max(0.5, deadline - time.monotonic())):
                return False
        return self.spool.peek(1) is None

    def ship(self, batch: Batch, timeout: float | None = None) -> bool:
        """One batch: True when it left the queue (sent or dead-lettered), False to retry later."""
        result = self.sink.send(batch.payload, timeout)
        if result.outcome is Outcome.OK:
            self.spool.ack(batch)
            if self._last_problem:
                log.warning("store write succeeded again; %d batches still queued", self.spool.stats().queued_batches)
                self._last_problem = ""
            return True
        if result.outcome is Outcome.RETRY:
            self._problem(result.message)
            return False
        return self._rejected(batch, result, timeout)

    def _problem(self, message: str) -> None:
        # Once per distinct problem: an outage must not write a line per retry.
        if message != self._last_problem:
            log.warning("store write failed, keeping the batch in the spool and retrying with backoff: %s", message)
            self._last_problem = message
        else:
            log.debug("store write failed again: %s", message)

    def _rejected(self, batch: Batch, result: SendResult, timeout: float | None) -> bool:
        lines = [line for line in batch.payload.split(b"\n") if line]
        if result.rejected and all(line in set(lines) for line in result.rejected):
            bad = [(line, result.rejected[line]) for line in lines if line in result.rejected]
            remaining = [line for line in lines if line not in result.rejected]
            log.warning("store refused %d malformed point(s), moved to the dead_letter table: %s",
                        len(bad), bad[0][1])
            rest = self.spool.dead_letter(batch, bad, remaining)
            # The good lines were probably written already (partial write); sending them again is harmless
            # because InfluxDB keeps one point per series and timestamp.
            return True if rest is None else self.ship(rest, timeout)
        try:
            bad, sent = isolate_rejected(self.sink.send, lines, result, timeout)
        except Unavailable as r:
            self._problem(r.result.message)
            return False
        log.warning("store refused %d point(s) of a batch of %d (found by bisection), moved to the dead_letter "
                    "table: %s", len(bad), len(lines), bad[0][1] if bad else result.message)
        self.spool.dead_letter(batch, bad, [], sent_points=sent)
        return True

    def _sleep(self, stop: threading.Event, seconds: float) -> None:
        # Woken by new data or stop; the stop event is checked by the caller's loop.
        if self._wake.wait(max(0.0, min(seconds, 1.0))):
            self._wake.clear()
