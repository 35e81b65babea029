"""`fleetwise report`: gather a week's data, write the HTML, a CSV per table and, asked for, the PDF.

Files are named by fleet and week (`capacity-report-2026-W47.html`, `capacity-report-2026-W47-<table>.csv`,
`capacity-report-2026-W47.pdf`) so one output directory keeps every week; each is written to a temporary
name and renamed, so a reader (a web server, a mail job) never sees half a file.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from analyzer.progress import Progress
from analyzer.report.gather import DEFAULT_TREND_WEEKS, ReportData, gather
from analyzer.report.week import IsoWeek

PREFIX = "capacity-report"


@dataclass
class ReportResult:
    data: ReportData
    html: Path
    csv: list[Path] = field(default_factory=list)
    pdf: Path | None = None

    def summary(self) -> str:
        d = self.data
        lines = [f"capacity report for {d.fleet_name}, {d.week}" +
                 (": no data in the week" if d.empty else ""), f"  {self.html}"]
        if self.pdf:
            lines.append(f"  {self.pdf}")
        if self.csv:
            lines.append(f"  {len(self.csv)} tables as CSV: {self.html.parent / self.html.stem}-*.csv")
        return "\n".join(lines)


def _write(path: Path, content: str | bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode() if isinstance(content, str) else content)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is meant to be read by others
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_report(week: IsoWeek, out_dir: str | os.PathLike[str], *, store: str | None = None, settings=None,
                 state_dir=None, alerts_state=None, fleet_name: str = "fleet", pdf: bool = False,
                 trend_weeks: int = DEFAULT_TREND_WEEKS, progress: Progress | None = None,
                 now: dt.datetime | None = None) -> ReportResult:
    """The report of `week`; store: a store URL read with agents.query.open_reader (None: no telemetry)."""
    from analyzer.report import html as report_html
    from analyzer.report.figures import figures as make_figures

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    progress = progress or Progress(f"report {week}")
    total = 8 if pdf else 7

    def tick(done: int, _steps: int) -> None:
        progress(done, total)

    if store is not None:
        from agents.query import open_reader

        with open_reader(store, settings) as reader:
            data = gather(week, reader=reader, store=store, state_dir=state_dir, alerts_state=alerts_state,
                          fleet_name=fleet_name, trend_weeks=trend_weeks, progress=tick, now=now)
    else:
        data = gather(week, store=None, state_dir=state_dir, alerts_state=alerts_state, fleet_name=fleet_name,
                      trend_weeks=trend_weeks, progress=tick, now=now)
    stem = f"{PREFIX}-{week}"
    result = ReportResult(data, out / f"{stem}.html")
    figs = make_figures(data)
    _write(result.html, report_html.render(data, figs))
    tick(6, total)
    if not data.empty:
        for name, frame in data.tables().items():
            path = out / f"{stem}-{name.replace('_', '-')}.csv"
            _write(path, frame.to_csv(index=False))
            result.csv.append(path)
    tick(7, total)
    if pdf:
        from analyzer.report.pdf import render_images, write_pdf

        images = render_images(figs)
        result.pdf = out / f"{stem}.pdf"
        page = report_html.render(data, figs, images=images)
        fd, tmp = tempfile.mkstemp(dir=out, prefix=f".{stem}.", suffix=".pdf.tmp")
        os.close(fd)
        try:
            write_pdf(page, Path(tmp))
            os.chmod(tmp, 0o644)
            os.replace(tmp, result.pdf)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        tick(8, total)
    return result
