"""What an enrichment will cost before it runs: its targets per video and requests per target.

Targets and their pages are measured with DuckDB over a table of videos: the harvested video
dataset once it has videos, and before that a *prior*, a fixed table of `PRIOR_VIDEOS` made-up
videos whose counts follow round, stated assumptions (`PRIOR_ASSUMPTION`). The block's `where`
runs over either table exactly as it will run over the dataset, so its share of videos is
estimated rather than ignored. Requests per target follow the kind's paging: the comments of a
video take `ceil(min(comment_count, max_per_target, 1000) / 100)` pages (one at least), the
replies one page per comment that has any; every other kind one page a target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harvester.kinds import COMMENT_CEILING, KINDS, Kind

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from harvester.config import Enrichment

__all__ = [
    "PRIOR_ASSUMPTION",
    "PRIOR_VIDEOS",
    "VCE_BATCH_TARGETS",
    "TargetCost",
    "measure_targets",
    "prior_videos",
    "target_condition",
]

#: Targets one VCE category task names at most (a pyrqs study's enrichments): a task costs a
#: create and a result page whatever the batch, so batches are as large as a query stays
#: readable; a saturated task is split.
VCE_BATCH_TARGETS = 100

#: Made-up videos in the prior: enough that a `where` passed by one video in a thousand still
#: counts ten of them.
PRIOR_VIDEOS = 10_000
#: Views are heavy-tailed: P(views > v) = sqrt(20 / v), so half the videos have under 80 views
#: and one in a hundred over 200,000.
_VIEWS_MIN = 20.0
_VIEWS_TAIL = 0.5
#: Each count a uniform share of the one before, up to these rates (half of it on average).
_LIKES_PER_VIEW = 0.12
_COMMENTS_PER_LIKE = 0.05
_SHARES_PER_LIKE = 0.03
_FAVORITES_PER_LIKE = 0.08
#: Of a video's comments, this share are replies to another (spread over its comments).
_REPLY_SHARE = 0.15
#: Records a page of a listed kind is assumed to hold before any is observed.
_ROWS_PER_PAGE = 50
PRIOR_ASSUMPTION = (
    "views heavy-tailed from 20 (half under 80), likes up to 12% of views, comments up to 5% of "
    "likes, 15% of comments replies; every video its own creator and playlist"
)


def _radical_inverse(i: int, base: int) -> float:
    """The van der Corput sequence: evenly spread points in [0, 1), the same on every run."""
    out, f = 0.0, 1.0
    while i:
        f /= base
        out += f * (i % base)
        i //= base
    return out


def prior_videos() -> pa.Table:
    """The prior's videos, with the columns a `where` over counts most often names."""
    import pyarrow as pa

    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "id",
            "username",
            "playlist_id",
            "view_count",
            "like_count",
            "comment_count",
            "share_count",
            "favorites_count",
        )
    }
    for i in range(PRIOR_VIDEOS):
        u = (i + 0.5) / PRIOR_VIDEOS
        views = _VIEWS_MIN / (1.0 - u) ** (1.0 / _VIEWS_TAIL)
        likes = views * _LIKES_PER_VIEW * _radical_inverse(i + 1, 2)
        cols["id"].append(i + 1)
        cols["username"].append(f"prior_{i}")
        cols["playlist_id"].append(i + 1)
        cols["view_count"].append(int(views))
        cols["like_count"].append(int(likes))
        cols["comment_count"].append(int(likes * _COMMENTS_PER_LIKE * _radical_inverse(i + 1, 3)))
        cols["share_count"].append(int(likes * _SHARES_PER_LIKE * _radical_inverse(i + 1, 5)))
        cols["favorites_count"].append(
            int(likes * _FAVORITES_PER_LIKE * _radical_inverse(i + 1, 7))
        )
    return pa.table(cols)


def target_condition(kind: Kind, where: str | None) -> str:
    """SQL true for a video that gives the kind a target: the target column set, and `where`."""
    col = kind.source_column
    sql = f"{col} IS NOT NULL"
    if col == "playlist_id":
        sql += f" AND {col} <> 0"
    if kind.target_type == "string":
        sql += f" AND {col} <> ''"
    if where:
        sql += f" AND ({where})"
    return sql


@dataclass(frozen=True, slots=True)
class TargetCost:
    """Over a table of `videos`: how many distinct targets they give, and what those cost."""

    videos: int
    targets: int
    requests: float
    records: float

    @property
    def per_video(self) -> float:
        return self.targets / self.videos if self.videos else 0.0

    @property
    def requests_per_target(self) -> float:
        return self.requests / self.targets if self.targets else 1.0

    @property
    def records_per_target(self) -> float:
        return self.records / self.targets if self.targets else 0.0


def _comment_cost(
    max_per_target: int | None, replies: bool, columns: set[str]
) -> tuple[str, str] | None:
    """(pages, rows) of one video's comments as SQL, or None without its comment_count."""
    if "comment_count" not in columns:
        return None
    cap = min(COMMENT_CEILING, max_per_target or COMMENT_CEILING)
    n = "greatest(coalesce(comment_count, 0), 0)"
    pages = f"greatest(1, ceil(least({n}, {cap}) / 100.0))"
    rows = f"least({n}, {cap})"
    if replies:
        # Replies spread over the top comments: those with at least one are balls-in-bins
        # `s * (1 - exp(-r / s))`, each a target of one page (of up to `cap` rows).
        r = f"({n} * {_REPLY_SHARE})"
        s = f"least({n} - {r}, {COMMENT_CEILING})"
        threads = f"(CASE WHEN {s} > 0 THEN {s} * (1 - exp(-{r} / {s})) ELSE 0 END)"
        pages += f" + {threads}"
        rows += f" + least({r}, {threads} * {cap})"
    return pages, rows


def measure_targets(db: duckdb.DuckDBPyConnection, relation: str, e: Enrichment) -> TargetCost:
    """The block's targets and their cost over `relation` (a table or `read_parquet(...)` of
    videos).

    Raises `duckdb.Error` when `where` cannot run over it (a column it lacks, bad SQL).
    """
    columns = {str(r[0]) for r in db.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
    kind = KINDS[e.kind]
    cond = target_condition(kind, e.where)
    cost = _comment_cost(e.max_per_target, e.replies, columns) if kind.name == "comments" else None
    pages, rows = cost if cost else ("1", "0")
    sql = (
        f"SELECT count(*), count(DISTINCT {kind.source_column}) FILTER (WHERE {cond}), "
        f"coalesce(sum({pages}) FILTER (WHERE {cond}), 0), "
        f"coalesce(sum({rows}) FILTER (WHERE {cond}), 0) FROM {relation}"
    )
    videos, targets, requests, records = db.execute(sql).fetchone() or (0, 0, 0, 0)
    if cost is None:
        # One page a target; for distinct targets (a creator of many videos) count them once.
        requests = targets
        records = targets * (1 if kind.flat else _ROWS_PER_PAGE)
    return TargetCost(int(videos), int(targets), float(requests), float(records))
