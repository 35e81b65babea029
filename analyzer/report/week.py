"""ISO weeks (`2026-W47`): parsing --week, their UTC bounds, the weeks before, the last complete one."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

_WEEK = re.compile(r"^(\d{4})-W(\d{2})$")


class WeekError(ValueError):
    """--week is not an ISO week."""


@dataclass(frozen=True, order=True)
class IsoWeek:
    year: int
    week: int

    def __str__(self) -> str:
        return f"{self.year}-W{self.week:02d}"

    @property
    def monday(self) -> dt.date:
        return dt.date.fromisocalendar(self.year, self.week, 1)

    @property
    def start(self) -> dt.datetime:
        """Monday 00:00 UTC: reports are in UTC, like every time in the stores."""
        return dt.datetime.combine(self.monday, dt.time(), tzinfo=dt.UTC)

    @property
    def end(self) -> dt.datetime:
        """The next Monday 00:00 UTC (exclusive)."""
        return self.start + dt.timedelta(days=7)

    def shifted(self, weeks: int) -> IsoWeek:
        return week_of(self.start + dt.timedelta(weeks=weeks))

    def label(self) -> str:
        """`2026-W47 (Mon 16 Nov to Sun 22 Nov 2026, UTC)`."""
        sunday = self.monday + dt.timedelta(days=6)
        return f"{self} (Mon {self.monday:%d %b} to Sun {sunday:%d %b %Y}, UTC)"


def week_of(moment: dt.datetime | dt.date) -> IsoWeek:
    year, week, _ = moment.isocalendar()
    return IsoWeek(year, week)


def parse_week(text: str) -> IsoWeek:
    """`2026-W47` -> IsoWeek; WeekError naming the value and the expected form otherwise."""
    m = _WEEK.match(text.strip())
    if m is None:
        raise WeekError(f"--week {text!r}: give an ISO week as YYYY-Www, e.g. 2026-W47")
    year, week = int(m.group(1)), int(m.group(2))
    try:
        dt.date.fromisocalendar(year, week, 1)
    except ValueError:
        last = dt.date(year, 12, 28).isocalendar()[1]  # 28 December is always in the year's last ISO week
        raise WeekError(f"--week {text!r}: {year} has ISO weeks 1 to {last}") from None
    return IsoWeek(year, week)


def last_complete_week(before: dt.datetime) -> IsoWeek:
    """The newest ISO week that ends at or before `before` (a report on Monday morning covers last week)."""
    if before.tzinfo is None:
        before = before.replace(tzinfo=dt.UTC)
    return week_of(before.astimezone(dt.UTC)).shifted(-1)
