"""What every collector is: a small unit that reads one source under configurable roots."""

from __future__ import annotations

import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict

from agents.points import FieldValue, Point
from agents.rates import CounterRates
from agents.schema import Measurement


def _compiles(value: str) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"not a valid regular expression: {e}") from None
    return value


Regex = Annotated[str, AfterValidator(_compiles)]
"""An option holding a regular expression, checked when the configuration is read."""


class NoOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Roots:
    """Where the kernel's trees are. Tests point these at fixture trees in the kernel's formats."""

    proc: Path = Path("/proc")
    sys: Path = Path("/sys")


@dataclass
class Cycle:
    """One collection round. `shared` passes facts between collectors of the same round
    (the GPU collector leaves the compute processes it saw for the jobs collector)."""

    time_ns: int
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.time_ns / 1e9


class Collector(ABC):
    """Subclasses set `name`, `measurements`, optionally `Options`, and implement `collect`."""

    name: ClassVar[str]
    measurements: ClassVar[tuple[Measurement, ...]]
    Options: ClassVar[type[BaseModel]] = NoOptions

    def __init__(self, roots: Roots, host: str, options: BaseModel | None = None) -> None:
        self.roots = roots
        self.host = host
        self.options = options if options is not None else self.Options()
        self.rates = CounterRates()
        self.log = logging.getLogger(f"fleetwise.collectors.{self.name}")
        self._logged: set[Hashable] = set()

    def log_once(self, key: Hashable, level: int, message: str, *args: object) -> None:
        """Log a condition the first time it is seen: an absent or broken source usually stays so for
        hours, and a line every round would flood the journal."""
        if key not in self._logged:
            self._logged.add(key)
            self.log.log(level, message, *args)

    @abstractmethod
    def collect(self, cycle: Cycle) -> Iterable[Point]:
        """Read the source once and yield points. Raise on failure; the runner logs and moves on."""

    def point(self, measurement: Measurement, tags: dict[str, str], fields: dict[str, FieldValue],
              cycle: Cycle) -> Point:
        return Point(measurement.name, {"host": self.host, **tags}, fields, cycle.time_ns)

    def add_rate(self, fields: dict[str, FieldValue], rate_field: str, key: tuple, value: float,
                 cycle: Cycle, scale: float = 1.0) -> None:
        """Set fields[rate_field] from a counter reading, or leave it out on the first read or a reset."""
        r = self.rates.rate(key, value, cycle.seconds)
        if r is not None:
            fields[rate_field] = r * scale

    def proc(self, *parts: str) -> Path:
        return self.roots.proc.joinpath(*parts)

    def sys(self, *parts: str) -> Path:
        return self.roots.sys.joinpath(*parts)


def read_text(path: Path) -> str:
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def read_str(path: Path) -> str:
    """A string sysfs attribute without its newline, or "" when it is absent or unreadable."""
    try:
        return read_text(path).strip()
    except OSError:
        return ""


def read_int(path: Path) -> int | None:
    """An integer sysfs attribute, or None when it is absent or unreadable (e.g. no PMA)."""
    try:
        word = read_text(path).split()[0]
        return int(word, 16) if word.startswith("0x") else int(word)
    except (OSError, ValueError, IndexError):
        return None


def listdir(path: Path) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []
