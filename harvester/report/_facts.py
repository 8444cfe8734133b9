"""What the report shows, read from the state store, the manifest and the dataset (DuckDB).

Nothing here is estimated except the forecast, which is the plan's own estimate (the same
`harvester plan` prints: observed costs once windows are done) laid out over the daily caps.
Every reader is read-only and takes no lock, so a report can be written beside a live run.
"""

from __future__ import annotations

import bisect
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb

from harvester._exceptions import UserError
from harvester._study_state import existing_state, state_location
from harvester._version import __version__
from harvester.config import Study
from harvester.plan import DAY, FinishedShard, estimate_plan, plan_study
from harvester.sink import MANIFEST, DatasetStore, open_dataset
from harvester.sink.readers import duckdb_files
from harvester.state import (
    ShardRecord,
    StateStore,
    Usage,
    WorkerUsage,
    utc_day,
)

__all__ = [
    "INDEX_LAG",
    "DayVideos",
    "EnrichFacts",
    "ForecastDay",
    "ReportFacts",
    "WindowFacts",
    "gather",
]

#: TikTok indexes a new video up to 48 hours after it is posted (research-tools-facts, fact 3):
#: a day harvested sooner than this after its end may still gain videos.
INDEX_LAG = 48 * 3600
#: The forecast stops here: a study that needs longer has a quota problem the page says.
FORECAST_DAYS_MAX = 3 * 365


@dataclass(frozen=True, slots=True)
class DayVideos:
    """One UTC day of the study period: its videos in the dataset and how far to trust them.

    `harvested_at` is when the latest harvest of the window holding the day began (None: not
    in the dataset yet). The day is *provisional* when that was less than `INDEX_LAG` after
    the day ended: videos indexed late may be missing.
    """

    day: date
    videos: int
    harvested_at: float | None
    #: Whether its window's counts are final: last harvested `settle_days` after the window's
    #: end (or settling is off). An indexed but unsettled day is refreshed by the next runs.
    settled: bool = True

    @property
    def harvested(self) -> bool:
        return self.harvested_at is not None

    @property
    def provisional(self) -> bool:
        end = datetime(self.day.year, self.day.month, self.day.day, tzinfo=UTC).timestamp() + DAY
        return self.harvested_at is not None and self.harvested_at < end + INDEX_LAG


@dataclass(frozen=True, slots=True)
class Harvest:
    """One harvest of a window: from its first leaf's start (None if unknown) to its commit."""

    started_at: float | None
    committed_at: float
    rows: int


@dataclass(frozen=True, slots=True)
class WindowFacts:
    """A plan shard (window) of the study, its leaves and its harvests."""

    key: str
    start: int
    end: int
    leaves: Mapping[str, int]  # leaf status -> count (the leaves a split replaced left out)
    splits: int
    parked: tuple[ShardRecord, ...]
    started_at: float | None
    last_started_at: float | None
    harvests: tuple[Harvest, ...]
    records: int
    #: Records the API returned that the exact local filter dropped (None: not recorded).
    filter_drops: int | None = None

    @property
    def committed(self) -> bool:
        return bool(self.harvests)

    @property
    def in_flight(self) -> bool:
        """A leaf started since the last commit (or ever, if never committed)."""
        last = self.harvests[-1].committed_at if self.harvests else None
        started = self.last_started_at
        return started is not None and (last is None or started > last)


@dataclass(frozen=True, slots=True)
class ForecastDay:
    day: date
    requests: int
    records: int


@dataclass(frozen=True, slots=True)
class EnrichFacts:
    """One `[[enrich]]` block as its state records it: targets by status, their outcomes (ok,
    the API's per-target verdicts, the error kind of a failed one), requests answered (a page
    or a verdict each) and the rows in its dataset's committed files."""

    kind: str
    #: Its dataset: a folder, or a prefix in a bucket.
    path: str
    targets: Mapping[str, int]
    outcomes: Mapping[str, int]
    answered: int
    rows: int
    files: int

    @property
    def total(self) -> int:
        return sum(self.targets.values())


@dataclass(frozen=True, slots=True)
class ReportFacts:
    study: Study
    generated_at: float
    version: str
    manifest: Mapping[str, Any] | None
    period: tuple[date, date]
    days: tuple[DayVideos, ...]
    windows: tuple[WindowFacts, ...]
    quota: tuple[Usage, ...]
    today: str
    forecast: tuple[ForecastDay, ...]
    forecast_basis: str
    forecast_requests: int
    forecast_records: int
    errors: tuple[tuple[float, str, int], ...]  # (hour start, kind, count)
    #: Errors counted before the state recorded them by hour (an older harvester's state).
    errors_undated: Mapping[str, int] = field(default_factory=dict)
    dataset_rows: int = 0
    dataset_files: int = 0
    enrichments: tuple[EnrichFacts, ...] = ()
    #: The pool's days by study (`[quota] pool`): every study sharing the ledger.
    pool_days: tuple[WorkerUsage, ...] = ()

    @property
    def sample(self) -> bool:
        """A VCE test-stage dataset: a random sample of the matches, not all of them (the
        study says so, or the manifest's `completeness` does)."""
        if self.study.source != "research-api" and self.study.stage == "test":
            return True
        return (self.manifest or {}).get("completeness") == "sample"

    @property
    def filter_drops(self) -> int | None:
        """Records the exact local filter dropped, over every window; None when the state does
        not count them, or the study has no local filter (RQS matches exactly) and none was."""
        drops = [w.filter_drops for w in self.windows if w.filter_drops is not None]
        if not drops or (self.study.source != "research-api" and not any(drops)):
            return None
        return sum(drops)


def gather(study: Study, *, now: float | None = None) -> ReportFacts:
    """Read everything the report shows; UserError when the study has no state yet."""
    store = existing_state(study)
    if store is None:
        raise UserError(
            f"{study.config_path.name}: nothing to report yet: no state at "
            f"{state_location(study)}; "
            f"run `harvester run {study.config_path.name}` first"
        )
    now = time.time() if now is None else now
    with store as state:
        windows = _windows(state)
        quota = tuple(state.quota_days())
        summary = state.status(utc_day(now))
        hours = state.error_hours()
        files = [f.path for f in state.files()]
        finished = [FinishedShard(*cost) for cost in state.committed_costs()]
        pool_days = tuple(state.usage_by_study()) if study.quota.pool else ()
        enrichments = _enrichments(study, state)
    dataset = open_dataset(study.dataset)
    dated = Counter[str]()
    for e in hours:
        dated[e.kind] += e.count
    undated = {k: n - dated[k] for k, n in summary.errors.items() if n > dated[k]}
    estimate = estimate_plan(plan_study(study), study, finished)
    today = utc_day(now)
    used_today = next((u for u in quota if u.day == today), Usage(today, 0, 0, False))
    first = min([study.start_date, *(_day(w.start) for w in windows)])
    last = max([study.end_date, *(_day(w.end - 1) for w in windows)])
    return ReportFacts(
        study=study,
        generated_at=now,
        version=__version__,
        manifest=_manifest(dataset),
        period=(first, last),
        days=_days(first, last, windows, _videos_per_day(dataset, files), study.settle_days),
        windows=windows,
        quota=quota,
        today=today,
        forecast=_forecast(study, used_today, estimate.requests, estimate.records),
        forecast_basis=estimate.basis,
        forecast_requests=estimate.requests,
        forecast_records=estimate.records,
        errors=tuple((float(e.hour), e.kind, e.count) for e in hours),
        errors_undated=undated,
        dataset_rows=summary.dataset_rows,
        dataset_files=summary.files,
        enrichments=enrichments,
        pool_days=pool_days,
    )


def _enrichments(study: Study, state: StateStore) -> tuple[EnrichFacts, ...]:
    if not study.enrichments:
        return ()
    es = state.enrichments(daily_requests=0, daily_records=0)  # the ledger is not read here
    if not es.started():
        return ()
    out = []
    for e in study.enrichments:
        s = es.summary(e.kind)
        files = es.files(e.kind)
        out.append(
            EnrichFacts(
                kind=e.kind,
                path=e.dataset,
                targets=s.by_status(),
                outcomes=s.outcomes,
                answered=s.answered,
                rows=sum(n for _, n in files),
                files=len(files),
            )
        )
    return tuple(out)


def _day(ts: int | float) -> date:
    return datetime.fromtimestamp(ts, UTC).date()


def _manifest(dataset: DatasetStore) -> Mapping[str, Any] | None:
    try:
        data = dataset.read_bytes(MANIFEST)
        manifest = json.loads(data) if data is not None else None
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _windows(state: StateStore) -> tuple[WindowFacts, ...]:
    by_plan: dict[str, list[ShardRecord]] = defaultdict(list)
    for s in state.shards():
        by_plan[s.plan_key].append(s)
    harvests: dict[str, list[Harvest]] = defaultdict(list)
    for h in state.window_harvests():
        harvests[h.plan_key].append(Harvest(h.started_at, h.committed_at, h.rows))
    out = []
    for key, shards in by_plan.items():
        plan = next(s for s in shards if s.key == key)
        starts = [s.started_at for s in shards if s.started_at is not None]
        drops = [d for d in (exact_filter_drops(s) for s in shards) if d is not None]
        out.append(
            WindowFacts(
                key=key,
                start=plan.start,
                end=plan.end,
                leaves=Counter(s.status for s in shards if s.status != "split"),
                splits=sum(1 for s in shards if s.status == "split"),
                parked=tuple(s for s in shards if s.status == "parked"),
                started_at=min(starts) if starts else None,
                last_started_at=max(starts) if starts else None,
                harvests=tuple(harvests.get(key, ())),
                records=sum(s.records for s in shards),
                filter_drops=sum(drops) if drops else None,
            )
        )
    return tuple(sorted(out, key=lambda w: (w.start, w.end)))


def exact_filter_drops(shard: ShardRecord) -> int | None:
    """Records of the shard the exact local filter dropped, when the state counts them.

    The public API matches approximately, so harvester asks for a superset and filters locally;
    a state store that counts the drops carries them on the shard record as `filtered`. A store
    without the count gives None, and the page says "not recorded" instead of a zero.
    """
    value = getattr(shard, "filtered", None)
    return int(value) if isinstance(value, int) else None


def _videos_per_day(dataset: DatasetStore, known: list[str]) -> dict[date, int]:
    """Rows per UTC creation day over the dataset's files that the state knows."""
    present = set(dataset.files())
    files = [f for f in known if f in present]
    if not files:
        return {}
    con = duckdb.connect()
    try:
        duckdb_files(con, "files", dataset, files)
        rows = con.execute(
            "SELECT create_time // 86400 AS day, count(*) FROM files GROUP BY day"
        ).fetchall()
    finally:
        con.close()
    epoch = date(1970, 1, 1)
    return {epoch + timedelta(days=int(d)): int(n) for d, n in rows if d is not None}


def _days(
    first: date,
    last: date,
    windows: tuple[WindowFacts, ...],
    videos: Mapping[date, int],
    settle_days: int = 0,
) -> tuple[DayVideos, ...]:
    starts = [w.start for w in windows]
    out = []
    day = first
    while day <= last:
        ts = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
        i = bisect.bisect_right(starts, ts) - 1
        harvested_at: float | None = None
        settled = True
        if i >= 0 and windows[i].start <= ts < windows[i].end and windows[i].harvests:
            latest = windows[i].harvests[-1]
            # The harvest's start is when its first pages were fetched: the conservative
            # moment to judge the indexing lag by.
            harvested_at = latest.started_at or latest.committed_at
            settled = settle_days == 0 or latest.committed_at >= windows[i].end + settle_days * DAY
        out.append(DayVideos(day, videos.get(day, 0), harvested_at, settled))
        day += timedelta(days=1)
    return tuple(out)


def _forecast(study: Study, today: Usage, requests: int, records: int) -> tuple[ForecastDay, ...]:
    """The plan's remaining estimate spent at the daily caps, from what today has left."""
    caps = study.quota
    out: list[ForecastDay] = []
    left_q, left_r = float(requests), float(records)
    day = date.fromisoformat(today.day)
    room_q = 0 if today.exhausted else max(0, caps.daily_requests - today.requests)
    room_r = 0 if today.exhausted else max(0, caps.daily_records - today.records)
    while (left_q >= 0.5 or left_r >= 0.5) and len(out) < FORECAST_DAYS_MAX:
        share = min(
            1.0,
            room_q / left_q if left_q >= 0.5 else math.inf,
            room_r / left_r if left_r >= 0.5 else math.inf,
        )
        if share > 0:
            q, r = left_q * share, left_r * share
            out.append(ForecastDay(day, round(q), round(r)))
            left_q, left_r = left_q - q, left_r - r
        day += timedelta(days=1)
        room_q, room_r = caps.daily_requests, caps.daily_records
    return tuple(out)
