"""The report's charts, as plotly figures built from `ReportFacts` (no data of their own)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from harvester.report._facts import ReportFacts, WindowFacts

__all__ = ["Chart", "charts"]

#: One colour per meaning, the same in every chart.
BLUE, ORANGE, GREY, RED, GREEN, PURPLE = (
    "#1f77b4",
    "#ff7f0e",
    "#b0b0b0",
    "#d62728",
    "#2ca02c",
    "#9467bd",
)
#: Harvested and indexed, counts still settling: the settled blue, lighter.
LIGHT_BLUE = "#9ecae9"
KIND_COLOURS = ("#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: Failures are drawn per hour up to this span, per day beyond it (hours would be hairlines).
HOURLY_UP_TO = timedelta(days=14)


@dataclass(frozen=True, slots=True)
class Chart:
    """A section of the page: an anchor, a heading, the figure and a line that reads it."""

    id: str
    title: str
    figure: go.Figure
    note: str


def charts(facts: ReportFacts) -> list[Chart]:
    out = [_videos(facts), _quota(facts), _failures(facts), _splits(facts), _timeline(facts)]
    if facts.filter_drops is not None:
        out.append(_filter_drops(facts))
    if facts.study.quota.pool:
        out.append(_pool(facts))
    return out


def _ts(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


def _layout(fig: go.Figure, *, height: int = 360, ytitle: str = "") -> go.Figure:
    fig.update_layout(
        height=height,
        margin={"l": 70, "r": 20, "t": 30, "b": 40},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 0},
        barmode="stack",
        bargap=0.1,
        plot_bgcolor="white",
        hovermode="closest",
        font={"family": "system-ui, sans-serif", "size": 12},
    )
    fig.update_xaxes(showgrid=True, gridcolor="#eee", linecolor="#999")
    fig.update_yaxes(showgrid=True, gridcolor="#eee", linecolor="#999", rangemode="tozero")
    if ytitle:
        fig.update_yaxes(title_text=ytitle)
    return fig


def _whole_numbers(fig: go.Figure, top: int) -> None:
    """Counts are whole: no 0.5 ticks on a small axis."""
    if top <= 10:
        fig.update_yaxes(tick0=0, dtick=1)


def _empty(fig: go.Figure, text: str) -> None:
    fig.add_annotation(
        text=text,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 15, "color": "#666"},
    )


def _videos(facts: ReportFacts) -> Chart:
    days = facts.days
    fig = go.Figure()
    indexed = [d for d in days if d.harvested and not d.provisional and d.videos]
    groups = (
        ("settled", BLUE, [d for d in indexed if d.settled]),
        (
            "unsettled (counts still changing; refreshed by the next runs)",
            LIGHT_BLUE,
            [d for d in indexed if not d.settled],
        ),
        (
            "provisional (harvested < 48 h after the day)",
            ORANGE,
            [d for d in days if d.provisional and d.videos],
        ),
    )
    for name, colour, selected in groups:
        fig.add_bar(
            name=name,
            x=[d.day for d in selected],
            y=[d.videos for d in selected],
            marker_color=colour,
            hovertemplate="%{x|%Y-%m-%d}: %{y:,} videos<extra>" + name.split(" (")[0] + "</extra>",
        )
    gaps = [d.day for d in days if d.harvested and not d.videos]
    fig.add_scatter(
        name="harvested, no videos",
        x=gaps,
        y=[0] * len(gaps),
        mode="markers",
        marker={"symbol": "x", "size": 9, "color": RED},
        hovertemplate="%{x|%Y-%m-%d}: no videos<extra></extra>",
    )
    missing = [d.day for d in days if not d.harvested]
    fig.add_scatter(
        name="not harvested yet",
        x=missing,
        y=[0] * len(missing),
        mode="markers",
        marker={"symbol": "square", "size": 7, "color": GREY},
        hovertemplate="%{x|%Y-%m-%d}: not harvested yet<extra></extra>",
    )
    for first, last in _runs(missing):
        fig.add_vrect(
            x0=first - timedelta(hours=12),
            x1=last + timedelta(hours=12),
            fillcolor=GREY,
            opacity=0.18,
            line_width=0,
            layer="below",
        )
    _layout(fig, ytitle="videos")
    fig.update_xaxes(range=[facts.period[0] - timedelta(days=1), facts.period[1] + timedelta(1)])
    harvested = [d for d in days if d.harvested]
    provisional = sum(1 for d in days if d.provisional)
    unsettled = sum(1 for d in days if d.harvested and not d.settled)
    note = (
        f"{sum(d.videos for d in days):,} videos over {len(days):,} days "
        f"({facts.period[0]} to {facts.period[1]}, UTC creation day); {len(harvested):,} days "
        f"harvested, {len(missing):,} not yet; {len(gaps):,} harvested days without a video; "
        f"{provisional:,} provisional: TikTok indexes new videos up to 48 hours late, so a day "
        "harvested sooner may still gain videos; "
        f"{unsettled:,} not settled yet: counts change for up to 10 days, and every run harvests "
        f"a window again until {facts.study.settle_days} days after its end (settle_days)."
    )
    return Chart("videos", "Videos per day", fig, note)


def _date_span(days: Sequence[date], minimum: int = 14) -> tuple[datetime, datetime]:
    """An x range around `days`, at least `minimum` days wide, so a single day is a bar and
    not the whole axis."""
    first, last = min(days), max(days)
    pad = max(0, minimum - (last - first).days) / 2
    lo = datetime(first.year, first.month, first.day) - timedelta(days=pad + 1)
    hi = datetime(last.year, last.month, last.day) + timedelta(days=pad + 1)
    return lo, hi


def _runs(days: Sequence[date]) -> list[tuple[date, date]]:
    """Consecutive days grouped into (first, last) spans."""
    spans: list[tuple[date, date]] = []
    for d in sorted(days):
        if spans and d - spans[-1][1] == timedelta(days=1):
            spans[-1] = (spans[-1][0], d)
        else:
            spans.append((d, d))
    return spans


@dataclass(frozen=True, slots=True)
class _DayBars:
    """The day bars of one row of the quota chart (used, forecast) or the pool chart (one per
    study): one legend entry each, shown on the first row only."""

    fig: go.Figure
    row: int
    first: bool
    what: str

    def add(
        self, name: str, group: str, x: Sequence[date], y: Sequence[int], marker: dict[str, object]
    ) -> None:
        self.fig.add_bar(
            name=name,
            x=x,
            y=y,
            width=DAY_MS * 0.8,
            marker=marker,
            legendgroup=group,
            showlegend=self.first,
            hovertemplate=f"%{{x|%Y-%m-%d}}: %{{y:,}} {self.what}<extra>{group}</extra>",
            row=self.row,
            col=1,
        )


def _per_day_figure() -> go.Figure:
    """Requests above, records below, on one day axis: the quota and pool charts."""
    return make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("requests per UTC day", "records per UTC day"),
    )


def _cap_line(
    fig: go.Figure, span: tuple[datetime, datetime], cap: int, what: str, row: int, name: str
) -> None:
    fig.add_scatter(
        name=name,
        x=list(span),
        y=[cap, cap],
        mode="lines",
        line={"color": RED, "dash": "dash"},
        legendgroup="cap",
        showlegend=row == 1,
        hovertemplate=f"cap: {cap:,} {what} a day<extra></extra>",
        row=row,
        col=1,
    )


def _per_day_layout(fig: go.Figure, span: tuple[datetime, datetime]) -> None:
    _layout(fig, height=480)
    fig.update_xaxes(type="date", range=list(span), tickformat="%b %d\n%Y")
    fig.update_yaxes(title_text="requests", row=1, col=1)
    fig.update_yaxes(title_text="records", row=2, col=1)


def _quota(facts: ReportFacts) -> Chart:
    quota = facts.study.quota
    fig = _per_day_figure()
    used = facts.quota
    days = [date.fromisoformat(u.day) for u in used]
    span = _date_span([*days, *(f.day for f in facts.forecast), date.fromisoformat(facts.today)])
    for row, (what, values, forecast, cap) in enumerate(
        (
            (
                "requests",
                [u.requests for u in used],
                [f.requests for f in facts.forecast],
                quota.daily_requests,
            ),
            (
                "records",
                [u.records for u in used],
                [f.records for f in facts.forecast],
                quota.daily_records,
            ),
        ),
        start=1,
    ):
        first = row == 1
        bars = _DayBars(fig, row, first, what)
        bars.add("used", "used", days, values, {"color": BLUE})
        forecast_days = [f.day for f in facts.forecast]
        hatched = {"color": BLUE, "opacity": 0.35, "pattern": {"shape": "/"}}
        bars.add("forecast to completion", "forecast", forecast_days, forecast, hatched)
        _cap_line(fig, span, cap, what, row, "daily cap")
        spent = [(d, v) for d, v, u in zip(days, values, used, strict=True) if u.exhausted]
        fig.add_scatter(
            name="API said: quota spent",
            x=[d for d, _ in spent],
            y=[v for _, v in spent],
            mode="markers",
            marker={"symbol": "triangle-down", "size": 11, "color": RED},
            legendgroup="spent",
            showlegend=first,
            hovertemplate="%{x|%Y-%m-%d}: quota spent<extra></extra>",
            row=row,
            col=1,
        )
    _per_day_layout(fig, span)
    if facts.forecast:
        done = facts.forecast[-1].day
        outlook = (
            f"forecast: {facts.forecast_requests:,} requests and {facts.forecast_records:,} "
            f"records left ({facts.forecast_basis} estimate, as `harvester plan` gives it), "
            f"complete on {done} UTC at the daily caps"
        )
    else:
        outlook = "nothing left to harvest"
    note = (
        f"{sum(u.requests for u in used):,} requests and {sum(u.records for u in used):,} "
        f"records over {len(used):,} quota days, against caps of {quota.daily_requests:,} "
        f"requests and {quota.daily_records:,} records a day (reset at 00:00 UTC); {outlook}."
    )
    return Chart("quota", "Quota used per day", fig, note)


def _failures(facts: ReportFacts) -> Chart:
    fig = go.Figure()
    errors = facts.errors
    hourly = bool(errors) and (_ts(errors[-1][0]) - _ts(errors[0][0])) <= HOURLY_UP_TO
    by_kind: dict[str, dict[datetime, int]] = defaultdict(lambda: defaultdict(int))
    for hour, kind, count in errors:
        at = _ts(hour)
        by_kind[kind][at if hourly else datetime(at.year, at.month, at.day)] += count
    for i, (kind, counts) in enumerate(sorted(by_kind.items())):
        points = sorted(counts.items())
        fig.add_bar(
            name=kind,
            x=[t + (timedelta(minutes=30) if hourly else timedelta(hours=12)) for t, _ in points],
            y=[n for _, n in points],
            width=(HOUR_MS if hourly else DAY_MS) * 0.9,
            marker_color=KIND_COLOURS[i % len(KIND_COLOURS)],
            hovertemplate="%{y:,} " + kind + "<extra></extra>",
        )
    total = sum(n for _, _, n in errors)
    _layout(fig, ytitle="failures per hour" if hourly else "failures per day")
    _whole_numbers(fig, total)
    fig.update_xaxes(type="date", title_text="when (UTC)")
    if errors:
        # A few hours (or days) of failures still read as bars, not as a wall.
        lo, hi = _ts(errors[0][0]), _ts(errors[-1][0])
        step = timedelta(hours=1) if hourly else timedelta(days=1)
        pad = max(step, (timedelta(hours=12) if hourly else timedelta(days=7)) - (hi - lo)) / 2
        fig.update_xaxes(range=[lo - pad, hi + step + pad])
    else:
        _empty(fig, "no failure recorded")
        runs = [h.committed_at for w in facts.windows for h in w.harvests] or [facts.generated_at]
        fig.update_xaxes(range=list(_date_span([_ts(t).date() for t in runs], minimum=2)))
        fig.update_yaxes(range=[0, 1], showticklabels=False)
    kinds = ", ".join(f"{k} {sum(by_kind[k].values()):,}" for k in sorted(by_kind))
    note = f"{total:,} failed requests or windows, by kind (UTC): {kinds or 'none'}."
    if facts.errors_undated:
        older = ", ".join(f"{k} {n:,}" for k, n in sorted(facts.errors_undated.items()))
        note += f" Before the state recorded failures by hour (an older harvester): {older}."
    note += " Failed calls count against the quota too; each is retried or split."
    return Chart("failures", "Failures by kind over time", fig, note)


def _mid(w: WindowFacts) -> datetime:
    return _ts((w.start + w.end) / 2)


def _splits(facts: ReportFacts) -> Chart:
    windows = facts.windows
    fig = go.Figure()
    for name, colour, values in (
        ("splits", PURPLE, [w.splits for w in windows]),
        ("parked leaves", RED, [len(w.parked) for w in windows]),
        ("leaves still open", GREY, [_open(w) for w in windows]),
    ):
        fig.add_bar(
            name=name,
            x=[_mid(w) for w in windows],
            y=values,
            width=[(w.end - w.start) * 1000 * 0.9 for w in windows],
            marker_color=colour,
            customdata=[w.key for w in windows],
            hovertemplate="%{customdata}: %{y:,} " + name + "<extra></extra>",
        )
    splits = sum(w.splits for w in windows)
    parked = sum(len(w.parked) for w in windows)
    _layout(fig, ytitle="per window")
    _whole_numbers(fig, max([w.splits + len(w.parked) + _open(w) for w in windows], default=0))
    fig.update_xaxes(type="date", title_text="window (creation dates)")
    if not splits and not parked and not sum(_open(w) for w in windows):
        _empty(fig, "no window was split or parked; every leaf is done")
        fig.update_yaxes(range=[0, 1], showticklabels=False)
    split_windows = sum(1 for w in windows if w.splits)
    note = (
        f"{splits:,} splits in {split_windows:,} of {len(windows):,} windows (a window that "
        "comes back saturated, or keeps failing, is cut in halves until none does); "
        f"{parked:,} leaves parked after repeated failures"
        + (" (run again with --retry-failed to take them up)." if parked else ".")
    )
    return Chart("windows", "Windows split and parked", fig, note)


def _open(w: WindowFacts) -> int:
    return sum(n for status, n in w.leaves.items() if status in ("pending", "running"))


def _timeline(facts: ReportFacts) -> Chart:
    fig = go.Figure()
    bars: list[tuple[str, datetime, float, int]] = []
    instants: list[tuple[str, datetime, int]] = []
    for w in facts.windows:
        for h in w.harvests:
            if h.started_at is None:
                instants.append((w.key, _ts(h.committed_at), h.rows))
            else:
                # At least a second wide, so a quick window is still visible.
                length = max((h.committed_at - h.started_at) * 1000, 1000.0)
                bars.append((w.key, _ts(h.started_at), length, h.rows))
    flying = [w for w in facts.windows if w.in_flight and w.last_started_at is not None]
    fig.add_bar(
        name="harvested",
        orientation="h",
        y=[k for k, _, _, _ in bars],
        base=[s for _, s, _, _ in bars],
        x=[n for _, _, n, _ in bars],
        customdata=[[r, n / 1000] for _, _, n, r in bars],
        marker_color=BLUE,
        hovertemplate=(
            "%{y}: from %{base|%Y-%m-%d %H:%M:%S} UTC, %{customdata[1]:,.1f} s, "
            "%{customdata[0]:,} rows<extra>harvested</extra>"
        ),
    )
    fig.add_bar(
        name="started, not committed",
        orientation="h",
        y=[w.key for w in flying],
        base=[_ts(w.last_started_at or 0) for w in flying],
        x=[max((facts.generated_at - (w.last_started_at or 0)) * 1000, 1000.0) for w in flying],
        marker_color=ORANGE,
        hovertemplate=(
            "%{y}: started %{base|%Y-%m-%d %H:%M:%S} UTC, leaves open or parked"
            "<extra>not committed</extra>"
        ),
    )
    fig.add_scatter(
        name="committed (start not recorded)",
        mode="markers",
        y=[k for k, _, _ in instants],
        x=[t for _, t, _ in instants],
        customdata=[r for _, _, r in instants],
        marker={"symbol": "diamond", "size": 9, "color": BLUE},
        hovertemplate=(
            "%{y}: committed %{x|%Y-%m-%d %H:%M:%S} UTC, %{customdata:,} rows<extra></extra>"
        ),
    )
    keys = [w.key for w in facts.windows]
    _layout(fig, height=max(260, min(22 * len(keys) + 110, 1400)))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(type="date", title_text="when (UTC)")
    fig.update_yaxes(
        type="category",
        categoryorder="array",
        categoryarray=list(reversed(keys)),
        title_text="window",
        rangemode=None,
    )
    if not bars and not instants and not flying:
        _empty(fig, "no window harvested yet")
    waiting = sum(1 for w in facts.windows if not w.harvests and not w.in_flight)
    again = sum(1 for w in facts.windows if len(w.harvests) > 1)
    note = (
        f"{sum(1 for w in facts.windows if w.harvests):,} of {len(facts.windows):,} windows "
        f"committed ({again:,} of them more than once), {len(flying):,} started and not "
        "committed (leaves still open or parked), "
        f"{waiting:,} not started. A bar runs from a window's first request to the commit "
        "of its files."
    )
    return Chart("timeline", "When each window was harvested", fig, note)


def _filter_drops(facts: ReportFacts) -> Chart:
    windows = [w for w in facts.windows if w.filter_drops is not None]
    fig = go.Figure()
    fig.add_bar(
        name="dropped by the exact filter",
        x=[_mid(w) for w in windows],
        y=[w.filter_drops for w in windows],
        width=[(w.end - w.start) * 1000 * 0.9 for w in windows],
        marker_color=GREEN,
        customdata=[w.key for w in windows],
        hovertemplate="%{customdata}: %{y:,} dropped<extra></extra>",
    )
    _layout(fig, ytitle="records dropped")
    fig.update_xaxes(type="date", title_text="window (creation dates)")
    if not facts.filter_drops:
        _empty(fig, "no record dropped: every video the API returned matched exactly")
        fig.update_yaxes(range=[0, 1], showticklabels=False)
    note = (
        f"{facts.filter_drops or 0:,} records the public API returned were dropped by the exact "
        "local filter: the API matches approximately, so harvester asks for a superset (they "
        "cost quota) and keeps only what the study's query matches exactly."
    )
    return Chart("filter", "Records dropped by the exact filter", fig, note)


#: One colour per study of a pool: this study's blue, the others in turn.
STUDY_COLOURS = ("#17becf", "#bcbd22", "#8c564b", "#e377c2", "#7f7f7f", "#9467bd", "#ff7f0e")


def _pool(facts: ReportFacts) -> Chart:
    """The pool's use per day, stacked by study, against the pool's daily caps."""
    quota = facts.study.quota
    fig = _per_day_figure()
    used = facts.pool_days
    studies = sorted({u.study for u in used}, key=lambda s: (s != facts.study.name, s))
    days = sorted({date.fromisoformat(u.day) for u in used})
    span = _date_span([*days, date.fromisoformat(facts.today)])
    others = iter(STUDY_COLOURS)
    for study in studies:
        colour = BLUE if study == facts.study.name else next(others, GREY)
        mine = [u for u in used if u.study == study]
        x = [date.fromisoformat(u.day) for u in mine]
        for row, what in enumerate(("requests", "records"), start=1):
            bars = _DayBars(fig, row, row == 1, what)
            bars.add(study, study, x, [getattr(u, what) for u in mine], {"color": colour})
    for row, (what, cap) in enumerate(
        (("requests", quota.daily_requests), ("records", quota.daily_records)), start=1
    ):
        _cap_line(fig, span, cap, what, row, "pool's daily cap")
    _per_day_layout(fig, span)
    if not used:
        _empty(fig, "the pool has no use recorded yet")
    share = f"; this study may take {quota.share:.0%} of a day" if quota.share else ""
    busiest = max(
        ((d, sum(u.requests for u in used if u.day == d)) for d in {u.day for u in used}),
        key=lambda x: (x[1], x[0]),
        default=None,
    )
    peak = f", the busiest {busiest[0]} with {busiest[1]:,} requests" if busiest else ""
    note = (
        f"Pool {quota.pool}: {len(studies):,} stud{'y' if len(studies) == 1 else 'ies'} over "
        f"{len(days):,} quota days{peak}, against the pool's caps of "
        f"{quota.daily_requests:,} requests and {quota.daily_records:,} records a day{share}."
    )
    return Chart("pool", f"Pool {quota.pool}: use per day by study", fig, note)
