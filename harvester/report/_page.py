"""The report's one HTML file: plotly.js inline, no request to any host when it is opened."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

import plotly
import plotly.io as pio
from plotly.offline import get_plotlyjs

from harvester.report._charts import Chart, charts
from harvester.report._facts import ReportFacts
from harvester.state.enrich import STATUSES

__all__ = ["render"]

#: The mode bar without plotly's logo and the actions that need a server; "download as PNG"
#: works offline.
PLOT_CONFIG: Mapping[str, Any] = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["sendDataToCloud", "select2d", "lasso2d"],
}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0; color: #222;
       background: #fafafa; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 24px 48px; }
h1 { font-size: 1.6em; margin: 0.4em 0 0.1em; }
h2 { font-size: 1.2em; margin: 0 0 0.3em; }
.sub { color: #555; margin: 0 0 1em; }
.banner { border-radius: 6px; padding: 10px 14px; margin: 12px 0; font-weight: 500; }
.banner.sample { background: #fff3cd; border: 1px solid #e0b400; }
.banner.incomplete { background: #e8f0fe; border: 1px solid #8ab4f8; font-weight: 400; }
table.summary { border-collapse: collapse; margin: 8px 0 16px; }
table.summary th { text-align: left; font-weight: 500; color: #555; padding: 2px 18px 2px 0; }
table.summary td { padding: 2px 0; }
section { background: white; border: 1px solid #e3e3e3; border-radius: 6px;
          padding: 14px 16px 8px; margin: 16px 0; }
section p.note { color: #444; margin: 0 0 6px; font-size: 0.92em; }
table.parked { border-collapse: collapse; font-size: 0.88em; margin: 8px 0; }
table.parked th, table.parked td { border-bottom: 1px solid #eee; padding: 3px 10px 3px 0;
                                   text-align: left; vertical-align: top; }
nav a { margin-right: 14px; }
footer { color: #777; font-size: 0.85em; margin-top: 24px; }
"""


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _summary(facts: ReportFacts) -> list[tuple[str, str]]:
    study = facts.study
    committed = sum(1 for w in facts.windows if w.harvests)
    stage = f" ({study.stage} stage)" if study.source != "research-api" else ""
    first, last = facts.period
    rows = [
        ("source", study.source + stage),
        ("period", f"{first} to {last} (UTC), windows of {study.window_days} days"),
        (
            "windows",
            f"{committed:,} of {len(facts.windows):,} committed"
            + (" (complete)" if facts.windows and committed == len(facts.windows) else ""),
        ),
        (
            "dataset",
            f"{facts.dataset_rows:,} videos in {facts.dataset_files:,} files at "
            f"{_shown(study.dataset)}",
        ),
    ]
    completeness = (facts.manifest or {}).get("completeness")
    if completeness is not None:
        rows.append(("completeness", _plain(completeness)))
    drops = facts.filter_drops
    if drops is not None:
        dropped = f"{drops:,} records the API returned did not match the query exactly"
    elif study.source != "research-api":
        dropped = "none: the Research Query Service matches exactly"
    else:
        dropped = "not recorded by this state"
    rows.append(("exact-filter drops", dropped))
    return rows


def _shown(where: str) -> str:
    """A folder as the user would type it: relative to where they are, when it is below; a
    bucket's URL as it is."""
    if "://" in where:
        return where
    try:
        return str(Path(where).relative_to(Path.cwd()))
    except ValueError:
        return where


def _plain(value: Any) -> str:
    """A manifest value in one line: text as is, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        return "; ".join(f"{k}: {_plain(v)}" for k, v in value.items())
    return json.dumps(value, default=str)


def _banners(facts: ReportFacts) -> str:
    out = []
    if facts.sample:
        drawn = ""
        how = (facts.manifest or {}).get("sample")
        if isinstance(how, Mapping) and {"limit_per_window", "day_budget"} <= set(how):
            drawn = escape(
                f" Here: at most {how['limit_per_window']:,} random videos per window and "
                f"{how['day_budget']:,} a day"
                + (
                    f", {how['windows_sampled']:,} of {how['windows']:,} windows sampled."
                    if {"windows", "windows_sampled"} <= set(how)
                    else "."
                )
            )
        out.append(
            '<div class="banner sample" id="sample-banner">This dataset is a sample. The VCE '
            "test stage returns a random sample of the matching videos (at most 5,000 records a "
            "day, only from creators with at least 25,000 followers): counts and shares in it "
            f"are not those of TikTok.{drawn} Harvest at the execution stage for complete "
            "data.</div>"
        )
    if facts.windows and not all(w.harvests for w in facts.windows):
        out.append(
            '<div class="banner incomplete">The harvest is not complete: grey days below are '
            "not in the dataset yet. Run <code>harvester run</code> again to continue.</div>"
        )
    return "\n".join(out)


def _section(chart: Chart) -> str:
    div = pio.to_html(
        chart.figure,
        include_plotlyjs=False,
        full_html=False,
        div_id=f"chart-{chart.id}",
        config=dict(PLOT_CONFIG),
        default_width="100%",
    )
    return (
        f'<section id="{chart.id}" class="chart"><h2>{escape(chart.title)}</h2>'
        f'<p class="note">{escape(chart.note)}</p>{div}</section>'
    )


def _parked(facts: ReportFacts) -> str:
    parked = [p for w in facts.windows for p in w.parked]
    if not parked:
        return ""
    rows = "".join(
        f"<tr><td>{escape(p.key)}</td><td>{escape(p.error_kind or '')}</td>"
        f"<td>{p.attempts}</td><td>{escape((p.last_error or '')[:300])}</td></tr>"
        for p in parked[:200]
    )
    more = f"<p>… and {len(parked) - 200:,} more.</p>" if len(parked) > 200 else ""
    return (
        '<section id="parked"><h2>Parked leaves</h2><p class="note">Windows given up on for '
        "now after repeated failures; <code>harvester run --retry-failed</code> takes them up."
        '</p><table class="parked"><tr><th>leaf</th><th>kind</th><th>attempts</th>'
        f"<th>last error</th></tr>{rows}</table>{more}</section>"
    )


def _enrichments(facts: ReportFacts) -> str:
    """Per `[[enrich]]` block: targets by status, rows, pages, outcomes by verdict or error."""
    if not facts.enrichments:
        return ""
    rows = []
    for e in facts.enrichments:
        cells = "".join(f"<td>{e.targets.get(s, 0):,}</td>" for s in STATUSES)
        outcomes = ", ".join(
            f"{k} {n:,}" for k, n in sorted(e.outcomes.items(), key=lambda x: (x[0] != "ok", x))
        )
        rows.append(
            f'<tr data-kind="{escape(e.kind)}"><td>{escape(e.kind)}</td>'
            f"<td>{escape(_shown(e.path))}</td><td>{e.total:,}</td>{cells}"
            f"<td>{e.rows:,}</td><td>{e.answered:,}</td>"
            f"<td>{escape(outcomes or 'none yet')}</td></tr>"
        )
    head = "".join(f"<th>{s}</th>" for s in STATUSES)
    return (
        '<section id="enrichments"><h2>Enrichments</h2><p class="note">Per <code>[[enrich]]'
        "</code> block: its targets by status, the rows in its dataset, the requests the API "
        "answered (a page, or a verdict on the target; failed attempts count in the quota "
        "chart) and each target's outcome: ok, the API's verdict on the account (private, "
        "deleted, under 18) or the error a failed target last met. A pyrqs study asks the VCE "
        "for many targets a task: its answers are tasks, and <code>empty</code> is a target "
        "its task gave no rows (a private, deleted or under-18 account looks the same as one "
        "with nothing to list).</p>"
        '<table class="parked"><tr><th>kind</th><th>dataset</th><th>targets</th>'
        f"{head}<th>rows</th><th>requests answered</th><th>outcomes</th></tr>"
        f"{''.join(rows)}</table>"
        "</section>"
    )


def render(facts: ReportFacts) -> str:
    """The whole page as one string."""
    study = facts.study
    sections = charts(facts)
    summary = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in _summary(facts)
    )
    nav = "".join(f'<a href="#{c.id}">{escape(c.title)}</a>' for c in sections)
    if facts.enrichments:
        nav += '<a href="#enrichments">Enrichments</a>'
    body = "\n".join(_section(c) for c in sections)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="harvester {escape(facts.version)}">
<title>{escape(study.name)}: harvest report</title>
<style>{STYLE}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head>
<body>
<main>
<h1>{escape(study.name)}</h1>
<p class="sub">Harvest report, {_when(facts.generated_at)}</p>
{_banners(facts)}
<table class="summary">{summary}</table>
<nav>{nav}</nav>
{body}
{_enrichments(facts)}
{_parked(facts)}
<footer>Written by harvester {escape(facts.version)} from the study's state and dataset at
{_when(facts.generated_at)}; charts by plotly {escape(plotly.__version__)}, whose plotly.js is
embedded in this file: it opens without a network.</footer>
</main>
</body>
</html>
"""
