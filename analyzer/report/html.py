"""The report as one self-contained HTML file: styles inline, and either plotly's JavaScript embedded once with
each chart as a live div (the HTML file), or each chart as an embedded PNG (the page WeasyPrint turns into the
PDF, which runs no JavaScript). Nothing is fetched from the network when the file is opened."""

from __future__ import annotations

import base64
import html
import numbers
from typing import Any

from analyzer.report.gather import ReportData
from analyzer.report.utilization import RESOURCES

CSS = """
@page { size: A4; margin: 14mm 12mm; @bottom-right { content: counter(page) " / " counter(pages); font-size: 8pt; } }
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10pt; color: #222; max-width: 1100px; margin: auto; }
h1 { font-size: 18pt; margin-bottom: 2pt; } h2 { font-size: 13pt; border-bottom: 1px solid #aaa;
  page-break-after: avoid; margin-top: 16pt; }
.meta { color: #555; font-size: 9pt; } .note { color: #8a4b00; }
table { border-collapse: collapse; margin: 6pt 0; font-size: 8.5pt; page-break-inside: auto; }
th, td { border: 1px solid #ccc; padding: 2pt 5pt; text-align: right; vertical-align: top; }
th { background: #eef2f6; } td.text, th.text { text-align: left; }
tr { page-break-inside: avoid; }
figure { margin: 6pt 0; page-break-inside: avoid; } figure img { width: 100%; }
.kpi { display: inline-block; margin: 4pt 14pt 4pt 0; } .kpi b { font-size: 14pt; display: block; }
.empty { font-size: 13pt; padding: 20pt; border: 2px dashed #c77; background: #fff6f6; }
"""

DASH = "\u2013"  # an en dash for a missing value
PERCENT = ("mean", "p95", "peak", "previous_week_mean", "allocated_share", "used_share_of_allocated", "utilization")
INTEGER = ("jobs", "recommendations", "alerts", "hours", "days", "gpus")


def _fmt(value: Any, column: str) -> str:
    import pandas as pd

    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return DASH
    if isinstance(value, pd.Timestamp):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, numbers.Real) and not isinstance(value, bool):  # numpy's integers too
        if column in PERCENT:
            return f"{value:.1%}"
        if column == "change_points":
            return f"{value:+.1f} pt"
        if column in INTEGER:
            return f"{int(value):,}"
        return f"{value:,.1f}" if abs(value) >= 10 else f"{value:,.3g}"
    return str(value)


def table_html(frame, limit: int | None = None) -> str:
    if frame is None or frame.empty:
        return ""
    shown = frame.head(limit) if limit else frame
    head = "".join(f'<th class="{"text" if frame[c].dtype == object else ""}">{html.escape(c.replace("_", " "))}</th>'
                   for c in shown.columns)
    rows = []
    for r in shown.itertuples(index=False):
        cells = [f'<td class="{"text" if isinstance(v, str) else ""}">{html.escape(_fmt(v, c))}</td>'
                 for c, v in zip(shown.columns, r, strict=True)]
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = f'<p class="meta">{len(frame) - len(shown):,} more rows in the CSV.</p>' if len(shown) < len(frame) else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>{more}"


def _notes(data: ReportData, *sections: str, extra: list[str] | None = None) -> str:
    notes = [n for s in sections for n in data.notes.get(s, [])] + list(extra or [])
    return "".join(f'<p class="note">{html.escape(n)}</p>' for n in notes)


class _Charts:
    """Charts as live plotly divs, or as PNG images (bytes) for the PDF."""

    def __init__(self, figures: dict[str, Any], images: dict[str, bytes] | None) -> None:
        self.figures, self.images = figures, images

    def __call__(self, name: str) -> str:
        if name not in self.figures:
            return ""
        if self.images is not None:
            png = base64.b64encode(self.images[name]).decode()
            return f'<figure><img alt="{name}" src="data:image/png;base64,{png}"></figure>'
        div = self.figures[name].to_html(full_html=False, include_plotlyjs=False, include_mathjax=False,
                                         config={"displaylogo": False})
        return f"<figure>{div}</figure>"


def _trend_pivot(trend):
    if trend is None or trend.empty:
        return None
    p = trend.pivot_table(index=["pool", "resource"], columns="week", values="mean").reset_index()
    order = {r: i for i, r in enumerate(RESOURCES)}
    p = p.sort_values(["pool", "resource"], key=lambda s: s.map(order) if s.name == "resource" else s)
    p.columns = [str(c) for c in p.columns]
    for c in p.columns[2:]:
        p[c] = p[c].map(lambda v: f"{v:.1%}" if v == v else DASH)
    return p


def _summary(data: ReportData) -> str:
    kpis = []
    g = data.gpu_hours
    if g is not None and len(g):
        total = g[g["pool"] == "all"].iloc[0]
        kpis += [("GPU-hours allocated", f"{total['allocated_gpu_hours']:,.0f}"),
                 ("GPU-hours used", f"{total['used_gpu_hours']:,.0f}"),
                 ("used of allocated", _fmt(total["used_share_of_allocated"], "utilization"))]
    t = data.recommendations.totals
    if t is not None and len(t):
        r = t.iloc[0]
        money = f"{r['money_week']:,.0f} {r['currency']}" if r["money_week"] else f"{r['gpu_hours_week']:,.0f} GPU-h"
        kpis += [("recommendations", f"{int(r['recommendations']):,}"), ("savings per week", money)]
    if data.alerts.table is not None:
        kpis.append(("alerts", f"{len(data.alerts.table):,}"))
    return "".join(f'<span class="kpi">{html.escape(k)}<b>{html.escape(v)}</b></span>' for k, v in kpis)


def render(data: ReportData, figures: dict[str, Any], images: dict[str, bytes] | None = None) -> str:
    """The whole report; `images` (name -> PNG) replaces the live charts (for the PDF)."""
    chart = _Charts(figures, images)
    title = f"Weekly capacity report: {data.fleet_name}, {data.week}"
    run = data.run.run
    meta = [f"{data.week.label()}", f"generated {data.generated_at:%Y-%m-%d %H:%M} UTC",
            f"store {data.store or DASH}"]
    if run is not None:
        meta.append(f"analyze run {run.run_id} ({data.run.start:%Y-%m-%d %H:%M} to {data.run.end:%Y-%m-%d %H:%M})")
    head = (f"<h1>{html.escape(title)}</h1><p class=\"meta\">{html.escape(' · '.join(meta))}</p>")
    body = [head, _notes(data, "run")]
    no_run = '<p class="note">No analyze run for this week (see above).</p>' if run is None else ""
    if data.empty:
        b = data.data_bounds
        where = (f"the store's telemetry runs from {b[0]:%Y-%m-%d %H:%M} to {b[1]:%Y-%m-%d %H:%M} UTC" if b else
                 "the store holds no telemetry" if data.store else "no store was given: --store URL")
        body.append(f'<p class="empty">No data for {html.escape(data.week.label())}: no telemetry and no job in '
                    f'the week ({html.escape(where)}). Nothing to chart.</p>')
    else:
        body += [_summary(data),
                 "<h2>1. Utilization per pool and resource</h2>",
                 '<p class="meta">Hourly pool values (mean over the pool\'s GPUs or hosts); mean, 95th percentile '
                 "and peak over the week; change against the week before.</p>",
                 _notes(data, "utilization"), table_html(data.utilization), chart("utilization_hourly"),
                 "<h3>Trend against the previous weeks</h3>", table_html(_trend_pivot(data.trend)),
                 chart("utilization_trend"),
                 "<h2>2. Allocated and used GPU-hours</h2>", no_run, _notes(data, "gpu_hours"),
                 table_html(data.gpu_hours), chart("gpu_hours"),
                 "<h2>3. Under-used workloads and users</h2>", no_run,
                 "" if data.workloads is None else
                 '<p class="meta">Unused = GPU-hours held minus GPU-hours used (utilization-weighted); idle = the '
                 "analyzer's GPU-hours below 5% busy.</p><h3>Workloads</h3>" + table_html(data.workloads) +
                 chart("underused_workloads") + "<h3>Users</h3>" + table_html(data.users),
                 "<h2>4. Demand forecast</h2>", no_run, _notes(data, extra=data.forecast.notes),
                 table_html(data.forecast.table), chart("forecast"),
                 "<h2>5. Recommendations</h2>", no_run, _notes(data, extra=data.recommendations.notes),
                 table_html(data.recommendations.totals), table_html(data.recommendations.by_kind),
                 chart("recommendations"), table_html(data.recommendations.top),
                 "<h2>6. Alerts</h2>", _notes(data, extra=data.alerts.notes),
                 table_html(data.alerts.by_rule), table_html(data.alerts.table, limit=50)]
    body.append('<p class="meta">How each number is computed: docs/report.md in the fleetwise sources.</p>')
    script = ""
    if images is None and figures:
        from plotly.offline import get_plotlyjs

        script = f'<script type="text/javascript">{get_plotlyjs()}</script>'
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style>{script}</head><body>{''.join(body)}</body></html>\n")
