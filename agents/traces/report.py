"""What an ingest did: rows read, rows written, rows skipped and why.

Every row a loader sees ends up either written or counted under a reason, so nothing is lost
silently: rows_read == rows_written + sum(skipped) for every file (truncated tails included).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field


class TraceFormatError(ValueError):
    """A file the loader cannot read at all (a required column is missing, a name it cannot parse)."""


@dataclass
class FileReport:
    path: str
    rows_read: int = 0
    rows_written: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    warnings: list[str] = field(default_factory=list)

    def skip(self, reason: str, count: int = 1) -> None:
        if count:
            self.skipped[reason] += count

    def to_dict(self) -> dict:
        return {"path": self.path, "rows_read": self.rows_read, "rows_written": self.rows_written,
                "skipped": dict(sorted(self.skipped.items())), "warnings": list(self.warnings)}


@dataclass
class IngestReport:
    kind: str
    store: str = ""
    files: list[FileReport] = field(default_factory=list)
    points_written: int = 0
    points_rejected: int = 0  # refused by the store (malformed), quarantined

    def file(self, path: str) -> FileReport:
        report = FileReport(path=path)
        self.files.append(report)
        return report

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_written(self) -> int:
        return sum(f.rows_written for f in self.files)

    @property
    def skipped(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for f in self.files:
            total.update(f.skipped)
        return total

    def to_dict(self) -> dict:
        return {"kind": self.kind, "store": self.store, "rows_read": self.rows_read,
                "rows_written": self.rows_written, "points_written": self.points_written,
                "points_rejected": self.points_rejected,
                "skipped": dict(sorted(self.skipped.items())), "files": [f.to_dict() for f in self.files]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_text(self) -> str:
        lines = [f"ingest {self.kind} -> {self.store}"]
        for f in self.files:
            lines.append(f"  {f.path}: read {f.rows_read}, written {f.rows_written}, "
                         f"skipped {sum(f.skipped.values())}")
            for reason, count in sorted(f.skipped.items()):
                lines.append(f"    skipped {reason}: {count}")
            for warning in f.warnings:
                lines.append(f"    warning: {warning}")
        lines.append(f"total: read {self.rows_read}, written {self.rows_written}, "
                     f"skipped {sum(self.skipped.values())}, points {self.points_written}"
                     + (f", refused by the store {self.points_rejected}" if self.points_rejected else ""))
        return "\n".join(lines) + "\n"
