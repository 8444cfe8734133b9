"""`plan` and `status` for enrichments: the cost before spending anything, progress by kind.

The estimate counts each block's targets in the video dataset (DuckDB) when it exists, minus
those already done; requests per target come from what this study's enrichments observed, else
from the videos' `comment_count` (comments: 100 a page, top 1,000) or one page a target. Before
any video is harvested the planned videos stand in as targets: an upper bound, said so.
"""

from __future__ import annotations

import math
from typing import Any

from harvester.config import Enrichment, Study
from harvester.kinds import FOLLOWERS_DAILY_RECORDS, FOLLOWERS_DAILY_REQUESTS, KINDS

__all__ = ["enrich_plan", "enrich_status"]


def _comment_pages(study: Study, e: Enrichment) -> int | None:
    """Pages the comment lists of the block's videos need, from their comment_count."""
    import duckdb

    if "comment_count" not in study.fields or not any(study.output_path.rglob("*.parquet")):
        return None
    glob = str(study.output_path / "**" / "*.parquet").replace("'", "''")
    cap = min(1000, e.max_per_target or 1000)
    sql = (
        f"SELECT coalesce(sum(greatest(1, ceil(least(comment_count, {cap}) / 100.0))), 0) "
        f"FROM read_parquet('{glob}', hive_partitioning = true, union_by_name = true)"
    )
    if e.where:
        sql += f" WHERE ({e.where})"
    with duckdb.connect() as db:
        row = db.execute(sql).fetchone()
    return int(row[0]) if row else None


def enrich_plan(study: Study, planned_videos: int) -> list[dict[str, Any]]:
    """Per `[[enrich]]` block: targets left, estimated requests and records, quota days."""
    from harvester.orchestrator._targets import enrich_state_path, open_enrich_state, read_targets

    out: list[dict[str, Any]] = []
    es = open_enrich_state(study) if enrich_state_path(study).exists() else None
    try:
        for e in study.enrichments:
            kind = KINDS[e.kind]
            targets = read_targets(study, e)
            basis = "video dataset"
            done: set[str] = set()
            pages_per_target: float | None = None
            rows_per_page = 0.0
            if es is not None:
                rows = es.targets(e.kind)
                done = {r.target for r in rows if r.status in ("done", "unavailable")}
                finished = [r for r in rows if r.status == "done" and r.parent is None]
                if finished:
                    pages = sum(r.pages for r in rows if r.status == "done")
                    pages_per_target = pages / len(finished)
                    got = sum(r.rows for r in rows if r.status == "done")
                    rows_per_page = got / max(1, pages)
                    basis = f"observed on {len(finished):,} targets"
            left = [t for t in targets if t not in done]
            n = len(left)
            if not targets and planned_videos:
                n, basis = planned_videos, "upper bound: every planned video"
            if pages_per_target is not None:
                requests = math.ceil(n * pages_per_target)
            elif kind.name == "comments" and (cpages := _comment_pages(study, e)) is not None:
                requests = cpages if not done else math.ceil(cpages * n / max(1, len(targets)))
            else:
                requests = n
            records = math.ceil(requests * (rows_per_page or (1 if kind.flat else 50)))
            if kind.pool == "followers":
                days = max(requests / FOLLOWERS_DAILY_REQUESTS, records / FOLLOWERS_DAILY_RECORDS)
            else:
                days = max(
                    requests / study.quota.daily_requests, records / study.quota.daily_records
                )
            out.append(
                {
                    "kind": e.kind,
                    "path": str(e.output_path),
                    "targets": len(targets),
                    "targets_left": n,
                    "estimated_requests": requests,
                    "estimated_records": records,
                    "pool": kind.pool,
                    "quota_days": round(days, 2),
                    "basis": basis,
                }
            )
    finally:
        if es is not None:
            es.close()
    return out


def enrich_status(study: Study, day: str) -> list[dict[str, Any]]:
    """Per block: targets by status, outcomes (ok and the API's verdicts), rows, files."""
    from harvester.orchestrator._targets import enrich_state_path, open_enrich_state

    if not study.enrichments or not enrich_state_path(study).exists():
        return []
    es = open_enrich_state(study)
    try:
        out = []
        for e in study.enrichments:
            s = es.summary(e.kind)
            out.append(
                {
                    "kind": e.kind,
                    "targets": s.targets,
                    "outcomes": s.outcomes,
                    "rows": s.rows,
                    "pages": s.pages,
                    "files": s.files,
                    "dataset_rows": sum(n for _, n in es.files(e.kind)),
                }
            )
        if any(KINDS[e.kind].pool == "followers" for e in study.enrichments):
            used = es.usage(day)
            out.append(
                {
                    "kind": "followers pool",
                    "requests_today": used.requests,
                    "records_today": used.records,
                    "exhausted": used.exhausted,
                }
            )
        return out
    finally:
        es.close()


def status_lines(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    rows = []
    for item in items:
        if "targets" not in item:
            rows.append(
                (
                    "followers quota",
                    f"{item['requests_today']:,}/{FOLLOWERS_DAILY_REQUESTS:,} requests, "
                    f"{item['records_today']:,}/{FOLLOWERS_DAILY_RECORDS:,} records today",
                )
            )
            continue
        by = ", ".join(f"{k} {v}" for k, v in sorted(item["targets"].items())) or "none"
        outcomes = ", ".join(f"{k} {v}" for k, v in sorted(item["outcomes"].items())) or "none"
        rows.append(
            (
                f"enrich {item['kind']}",
                f"targets {by}; outcomes {outcomes}; {item['dataset_rows']:,} rows in "
                f"{item['files']:,} file{'' if item['files'] == 1 else 's'}",
            )
        )
    return rows


def plan_lines(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (
            f"enrich {i['kind']}",
            f"{i['targets_left']:,} targets left, ~{i['estimated_requests']:,} requests, "
            f"~{i['estimated_records']:,} records, {i['quota_days']} quota days "
            f"({i['pool']} pool; {i['basis']})",
        )
        for i in items
    ]


def verify_enrichments(study: Study) -> list[dict[str, Any]]:
    """Each kind's dataset against the enrichment state: every file the state records present
    with its row count, nothing else visible, one schema, no (target, record) twice."""
    import duckdb
    import pyarrow.parquet as pq

    from harvester.orchestrator._targets import enrich_state_path, open_enrich_state
    from harvester.sink.dataset import reader_visible
    from harvester.sink.enrich import enrich_schema

    if not study.enrichments or not enrich_state_path(study).exists():
        return []
    es = open_enrich_state(study)
    try:
        expected = {e.kind: dict(es.files(e.kind)) for e in study.enrichments}
    finally:
        es.close()
    out = []
    for e in study.enrichments:
        kind, root, want = KINDS[e.kind], e.output_path, expected[e.kind]
        present = sorted(
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and reader_visible(p.relative_to(root).as_posix())
        )
        schema = enrich_schema(kind, with_partition=False)
        rows, mismatched, bad_schema = 0, [], []
        found = [p for p in present if p in want]
        for rel in found:
            meta = pq.read_metadata(str(root / rel))
            rows += int(meta.num_rows)
            if meta.num_rows != want[rel]:
                mismatched.append(rel)
            if not meta.schema.to_arrow_schema().remove_metadata().equals(schema):
                bad_schema.append(rel)
        duplicates = 0
        if found:
            key = dict(kind.renames).get(kind.record_key, kind.record_key) or kind.target
            con = duckdb.connect()
            try:
                row = con.execute(
                    f"SELECT count(*) - count(DISTINCT ({kind.target}, {key})) "
                    "FROM read_parquet(?)",
                    [[str(root / rel) for rel in found]],
                ).fetchone()
            finally:
                con.close()
            duplicates = int(row[0]) if row else 0
        item = {
            "kind": e.kind,
            "files": len(found),
            "rows": rows,
            "missing": sorted(p for p in want if p not in set(present)),
            "strays": [p for p in present if p not in want],
            "row_mismatches": mismatched,
            "schema_mismatches": bad_schema,
            "duplicates": duplicates,
        }
        item["ok"] = not (
            item["missing"] or item["strays"] or mismatched or bad_schema or duplicates
        )
        out.append(item)
    return out


def verify_lines(items: list[dict[str, Any]]) -> list[str]:
    lines = []
    for i in items:
        lines.append(
            f"{'ok' if i['ok'] else 'FAILED'}: enrich {i['kind']}: {i['files']:,} files, "
            f"{i['rows']:,} rows"
        )
        for what in ("missing", "strays", "row_mismatches", "schema_mismatches"):
            lines += [f"  {what.replace('_', ' ')}: {p}" for p in i[what][:20]]
        if i["duplicates"]:
            lines.append(f"  duplicate rows: {i['duplicates']}")
    return lines
