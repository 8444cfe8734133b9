"""`plan` and `status` for enrichments: the cost before spending anything, progress by kind.

The estimate counts each block's targets in the video dataset (DuckDB) minus those already done,
plus the targets the videos still to come will bring, at the dataset's rate of targets per video.
Requests per target come from what this study's enrichments observed, else from the kind's
paging over the videos' counts (`harvester.plan.enrich`). Before any video is harvested, the
same measure runs over the plan's prior videos: an assumption, said so, that the first videos
replace.
"""

from __future__ import annotations

import math
from typing import Any

from harvester.config import Study
from harvester.kinds import FOLLOWERS_DAILY_RECORDS, FOLLOWERS_DAILY_REQUESTS, KINDS
from harvester.orchestrator._figures import about
from harvester.plan.enrich import TargetCost
from harvester.state.enrich import EnrichState

__all__ = ["enrich_plan", "enrich_status"]

#: A target in one of these has nothing left to fetch.
_SETTLED = ("done", "unavailable")


def _per_target(es: EnrichState | None, kind: str) -> tuple[int, float, float] | None:
    """(targets, requests, records per target) this study's finished targets of `kind` cost,
    replies included; None before any finished."""
    if es is None:
        return None
    rows = es.targets(kind)
    finished = sum(1 for r in rows if r.status == "done" and r.parent is None)
    if not finished:
        return None
    pages = sum(r.pages for r in rows if r.status == "done")
    got = sum(r.rows for r in rows if r.status == "done")
    return finished, pages / finished, got / finished


def enrich_plan(study: Study, videos_to_come: int) -> list[dict[str, Any]]:
    """Per `[[enrich]]` block: targets left, estimated requests and records, quota days.

    `videos_to_come` are the videos the plan still expects (its estimate for unfinished shards):
    each brings targets at the rate the video dataset shows, or before any video landed at the
    prior's (`harvester.plan.enrich`).
    """
    import duckdb

    from harvester.orchestrator._targets import existing_enrich_state, read_targets
    from harvester.plan.enrich import (
        PRIOR_ASSUMPTION,
        VCE_BATCH_TARGETS,
        measure_targets,
        prior_videos,
    )
    from harvester.sink.readers import duckdb_view
    from harvester.sink.store import open_dataset

    out: list[dict[str, Any]] = []
    es = existing_enrich_state(study)
    db = duckdb.connect()
    # The video dataset (a folder or a bucket) as the view `videos`, once it has a file.
    harvested = duckdb_view(db, "videos", open_dataset(study.dataset))
    if not harvested:
        db.register("prior_videos", prior_videos())
    try:
        for e in study.enrichments:
            kind = KINDS[e.kind]
            targets = read_targets(study, e)
            done: set[str] = set()
            if es is not None:
                done = {r.target for r in es.targets(e.kind) if r.status in _SETTLED}
            relation = "videos" if harvested else "prior_videos"
            try:
                base: TargetCost | None = measure_targets(db, relation, e)
            except duckdb.Error:
                # `where` names a column the prior does not have (the dataset's were checked
                # by read_targets): every planned video stands in as a target.
                base = None
            per_video = base.per_video if base is not None else 1.0
            requests_each = base.requests_per_target if base is not None else 1.0
            records_each = (
                base.records_per_target if base is not None else (1.0 if kind.flat else 50.0)
            )
            observed = _per_target(es, e.kind)
            assumed = not harvested
            if observed is not None:
                finished, requests_each, records_each = observed
                basis = f"observed on {finished:,} targets"
            elif harvested and base is not None:
                basis = (
                    f"{base.per_video:.1%} of {base.videos:,} harvested videos give a target, "
                    f"{requests_each:.2f} requests a target"
                )
            elif base is not None:
                basis = (
                    f"assumed: {per_video:.1%} of planned videos give a target, "
                    f"{requests_each:.2f} requests a target, from harvester's prior videos; "
                    "updates after the first videos land"
                )
            else:
                basis = (
                    "assumed: every planned video gives a target (where names a column the "
                    "prior lacks); updates after the first videos land"
                )
            n = len([t for t in targets if t not in done]) + videos_to_come * per_video
            requests = math.ceil(n * requests_each)
            if study.source == "pyrqs" and observed is None:
                # VCE tasks of many targets: a create and a result page each (more when a
                # saturated one is split), not the endpoints' requests per target.
                requests = 2 * math.ceil(n / VCE_BATCH_TARGETS)
                basis += f"; pyrqs: one VCE task per {VCE_BATCH_TARGETS} targets"
            records = math.ceil(n * records_each)
            if kind.pool == "followers":
                days = max(requests / FOLLOWERS_DAILY_REQUESTS, records / FOLLOWERS_DAILY_RECORDS)
            else:
                days = max(
                    requests / study.quota.daily_requests, records / study.quota.daily_records
                )
            out.append(
                {
                    "kind": e.kind,
                    "path": e.dataset,
                    "targets": len(targets),
                    "targets_left": math.ceil(n),
                    "estimated_requests": requests,
                    "estimated_records": records,
                    "requests_per_target": round(requests_each, 3),
                    "targets_per_video": round(per_video, 4),
                    "pool": kind.pool,
                    "quota_days": round(days, 2),
                    "assumed": assumed,
                    "prior": PRIOR_ASSUMPTION if assumed and base is not None else None,
                    "basis": basis,
                }
            )
    finally:
        db.close()
        if es is not None:
            es.close()
    return out


def enrich_status(study: Study, day: str) -> list[dict[str, Any]]:
    """Per block: targets by status, outcomes (ok and the API's verdicts), rows, files."""
    from harvester.orchestrator._targets import existing_enrich_state

    es = existing_enrich_state(study)
    if es is None:
        return []
    try:
        out = []
        for e in study.enrichments:
            s = es.summary(e.kind)
            out.append(
                {
                    "kind": e.kind,
                    "targets": s.by_status(),
                    "outcomes": s.outcomes,
                    "rows": s.rows,
                    "pages": s.pages,
                    "requests_answered": s.answered,
                    # A pyrqs study's enrichments are VCE tasks of many targets each.
                    "answered_as": "tasks" if study.source == "pyrqs" else "requests",
                    "unsettled": s.unsettled,
                    "files": s.files,
                    "dataset_rows": sum(n for _, n in es.files(e.kind)),
                }
            )
        if any(KINDS[e.kind].pool == "followers" for e in study.enrichments):
            used = es.quota.usage(day)
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
        total = sum(item["targets"].values())
        by = ", ".join(f"{n:,} {k}" for k, n in item["targets"].items() if n)
        # ok first, then the API's verdicts and error kinds, the most frequent first.
        outcomes = ", ".join(
            f"{k} {n:,}"
            for k, n in sorted(item["outcomes"].items(), key=lambda x: (x[0] != "ok", -x[1], x[0]))
        )
        files = item["files"]
        text = (
            f"{total:,} targets{': ' + by if by else ''}; outcomes {outcomes or 'none yet'}; "
            f"{item['dataset_rows']:,} rows in {files:,} file{'' if files == 1 else 's'}; "
            f"{item['requests_answered']:,} {item.get('answered_as', 'requests')} answered"
        )
        if item["outcomes"].get("empty"):
            text += (
                "; empty: the VCE's task gave the target no rows (a private, deleted or "
                "under-18 account looks the same as one with nothing to list)"
            )
        if item["unsettled"]:
            text += f"; {item['unsettled']:,} fetched before their counts settled (next run again)"
        rows.append((f"enrich {item['kind']}", text))
    return rows


def enrich_upkeep(
    study: Study, items: list[dict[str, Any]], videos_per_day: float
) -> list[tuple[str, str]]:
    """What each block costs a day to stay current in a scheduled study (adds it to `items`):
    the targets a new day's videos bring, each fetched on its first night and again on each of
    the next `settle_days` until its counts settle, at the block's requests per target."""
    nights = 1 + (study.settle_days if "create_time" in study.fields else 0)
    rows = []
    for i in items:
        new = videos_per_day * i["targets_per_video"]
        daily = math.ceil(new * nights * i["requests_per_target"])
        i["daily_requests_to_stay_current"] = daily
        quota = FOLLOWERS_DAILY_REQUESTS if i["pool"] == "followers" else study.quota.daily_requests
        again = f", each fetched on {nights} nights until its counts settle" if nights > 1 else ""
        rows.append(
            (
                f"enrich {i['kind']} upkeep",
                f"~{daily:,} requests a day (~{new:,.1f} new targets a day{again}), "
                f"{daily / quota:.0%} of the {i['pool']} pool's daily requests",
            )
        )
    return rows


def plan_lines(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    rows = []
    for i in items:
        # Figures from an assumption are rounded and marked, as the videos' are.
        count = about if i["assumed"] else "{:,}".format
        mark = "~" if i["assumed"] else ""
        rows.append(
            (
                f"enrich {i['kind']}",
                f"{count(i['targets_left'])} targets left, {count(i['estimated_requests'])} "
                f"requests, {count(i['estimated_records'])} records, {mark}{i['quota_days']} "
                f"quota days ({i['pool']} pool; {i['basis']})",
            )
        )
    prior = next((i["prior"] for i in items if i.get("prior")), None)
    if prior:
        rows.append(("prior videos", prior))
    return rows


def verify_enrichments(study: Study) -> list[dict[str, Any]]:
    """Each kind's dataset against the enrichment state: every file the state records present
    with its row count, nothing else visible, one schema, no (target, record) twice."""
    from harvester.orchestrator._targets import existing_enrich_state
    from harvester.sink import open_dataset, verify
    from harvester.sink.enrich import enrich_schema

    es = existing_enrich_state(study)
    if es is None:
        return []
    try:
        expected = {e.kind: dict(es.files(e.kind)) for e in study.enrichments}
    finally:
        es.close()
    out = []
    for e in study.enrichments:
        kind, want = KINDS[e.kind], expected[e.kind]
        record = dict(kind.renames).get(kind.record_key, kind.record_key) or kind.target
        r = verify(
            open_dataset(e.dataset),
            want,
            schema=enrich_schema(kind, with_partition=False),
            key=(kind.target, record) if record != kind.target else (kind.target,),
        )
        item = {
            "kind": e.kind,
            "files": r.files,
            "rows": r.rows,
            "missing": list(r.missing),
            "strays": list(r.strays),
            "row_mismatches": sorted(r.row_mismatches),
            "schema_mismatches": list(r.schema_mismatches),
            "duplicates": r.duplicate_ids,
            "ok": r.ok,
        }
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
