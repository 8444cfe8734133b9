"""`plan`, `status`, `verify` and `cancel`: what a user or a scheduler asks between runs.

Each returns a JSON-able dict with a `text` rendering for the terminal. None of them takes the
run lock: they read (or, for cancel, touch only remote tasks), so they work beside a live run.
"""

from __future__ import annotations

from typing import Any

import anyio

from harvester.config import Credentials, Study
from harvester.plan import FinishedShard, estimate_plan, plan_study
from harvester.state import SqliteState, utc_day

# `verify` and `cancel` import the sink (Arrow) and the HTTP client where they need them:
# `plan` and `status` must answer in well under a second.

__all__ = ["cancel_study", "plan_report", "status_report", "verify_study"]


def _existing_state(study: Study) -> SqliteState | None:
    if not study.state_path.exists():
        return None
    return SqliteState(study.state_path)


def _table(rows: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def plan_report(study: Study) -> dict[str, Any]:
    plan = plan_study(study)
    finished: list[FinishedShard] = []
    state = _existing_state(study)
    if state is not None:
        with state:
            finished = [FinishedShard(*cost) for cost in state.committed_costs()]
    est = estimate_plan(plan, study, finished)
    report: dict[str, Any] = {
        "study": study.name,
        "source": study.source,
        "period": f"{study.start_date} .. {study.end_date}",
        "window_days": study.window_days,
        "shards": len(plan),
        "shards_done": est.shards_done,
        "estimate_basis": est.basis,
        "records_per_day": round(est.records_per_day, 1),
        "estimated_requests": est.requests,
        "estimated_records": est.records,
        "estimated_tasks": est.tasks,
        "estimated_splits": est.splits,
        "quota_days": round(est.quota_days, 2),
        "first_shards": [s.key for s in plan.shards[:5]],
        "warnings": list(study.warnings),
    }
    rows = [
        ("study", f"{study.name} ({study.source})"),
        ("period", report["period"]),
        ("shards", f"{len(plan)} windows of {study.window_days}d, {est.shards_done} done"),
        ("records/day", f"{report['records_per_day']:,} ({est.basis})"),
        ("est. requests", f"{est.requests:,}"),
        ("est. records", f"{est.records:,}"),
        (
            "quota days",
            f"{report['quota_days']} (at {study.quota.daily_requests:,} requests "
            f"and {study.quota.daily_records:,} records a day)",
        ),
    ]
    if study.source != "research-api":
        rows.insert(5, ("est. tasks", f"{est.tasks:,} (+{est.splits:,} splits)"))
    report["text"] = _table(rows) + "".join(f"\nwarning: {w}" for w in study.warnings)
    return report


def status_report(study: Study, *, now: float | None = None) -> dict[str, Any]:
    state = _existing_state(study)
    if state is None:
        return {
            "study": study.name,
            "started": False,
            "text": f"{study.name}: not started (no state at {study.state_path})",
        }
    with state:
        s = state.status(utc_day(now))
        parked = [
            {"shard": r.key, "kind": r.error_kind, "error": r.last_error}
            for r in state.shards(status="parked")
        ]
    quota = study.quota
    report: dict[str, Any] = {
        "study": study.name,
        "started": True,
        "shards": dict(s.shards),
        "plan_shards": s.plan_shards,
        "committed_plan_shards": s.committed_plan_shards,
        "complete": s.plan_shards > 0 and s.committed_plan_shards == s.plan_shards,
        "records": s.records,
        "pages": s.pages,
        "files": s.files,
        "dataset_rows": s.dataset_rows,
        "quota_day": s.today.day,
        "requests_today": s.today.requests,
        "records_today": s.today.records,
        "requests_left_today": max(0, quota.daily_requests - s.today.requests),
        "records_left_today": max(0, quota.daily_records - s.today.records),
        "quota_exhausted_today": s.today.exhausted,
        "errors": dict(s.errors),
        "parked": parked,
    }
    by_state = ", ".join(f"{k} {v}" for k, v in sorted(s.shards.items())) or "none"
    rows = [
        ("study", study.name),
        (
            "plan shards",
            f"{s.committed_plan_shards}/{s.plan_shards} committed"
            + (" (complete)" if report["complete"] else ""),
        ),
        ("shards by state", by_state),
        ("records", f"{s.records:,} fetched, {s.dataset_rows:,} in {s.files:,} files"),
        (
            "quota today",
            f"{s.today.requests:,}/{quota.daily_requests:,} requests, "
            f"{s.today.records:,}/{quota.daily_records:,} records ({s.today.day} UTC)"
            + (", exhausted" if s.today.exhausted else ""),
        ),
        ("errors", ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "none"),
    ]
    text = _table(rows)
    for p in parked[:10]:
        text += f"\nparked: {p['shard']} ({p['kind']}): {p['error']}"
    report["text"] = text
    return report


def verify_study(study: Study) -> dict[str, Any]:
    from harvester.sink import layout, verify

    state = _existing_state(study)
    if state is None:
        return {"ok": False, "text": f"{study.name}: nothing to verify (no state yet)"}
    with state:
        expected = {f.path: f.rows for f in state.files()}
        summary = state.status()
    schema = layout(study.fields, study.partition_by).file_schema
    r = verify(study.output_path, expected, schema=schema)
    complete = summary.plan_shards > 0 and summary.committed_plan_shards == summary.plan_shards
    report: dict[str, Any] = {
        "ok": r.ok,
        "complete": complete,
        "files": r.files,
        "rows": r.rows,
        "missing": list(r.missing),
        "strays": list(r.strays),
        "row_mismatches": {k: list(v) for k, v in r.row_mismatches.items()},
        "duplicate_ids": r.duplicate_ids,
        "schema_mismatches": list(r.schema_mismatches),
    }
    lines = [
        f"{'ok' if r.ok else 'FAILED'}: {r.files:,} files, {r.rows:,} rows; "
        f"{summary.committed_plan_shards}/{summary.plan_shards} plan shards committed"
        + ("" if complete else " (harvest not complete)"),
    ]
    for what, items in (
        ("missing", r.missing),
        ("stray", r.strays),
        ("schema differs", r.schema_mismatches),
    ):
        lines += [f"{what}: {p}" for p in items[:20]]
    lines += [
        f"row count differs: {p} state {e} file {g}"
        for p, (e, g) in list(r.row_mismatches.items())[:20]
    ]
    if r.duplicate_ids:
        lines.append(f"duplicate ids: {r.duplicate_ids} (e.g. {list(r.duplicate_examples)[:5]})")
    report["text"] = "\n".join(lines)
    return report


def cancel_study(study: Study, credentials: Credentials) -> dict[str, Any]:
    """Cancel the remote tasks of leaves not yet paged; their next run creates fresh ones."""
    from harvester.api import ApiSession, RqsClient
    from harvester.api import Credentials as ApiCredentials

    if study.source == "research-api":
        return {"cancelled": [], "text": "research-api studies have no remote tasks to cancel"}
    state = _existing_state(study)
    if state is None:
        return {"cancelled": [], "text": f"{study.name}: not started"}
    with state:
        leaves = [
            s for s in state.shards() if s.task_id and s.status in ("pending", "running", "parked")
        ]

        async def go() -> list[str]:
            done: list[str] = []
            creds = ApiCredentials(credentials.client_key, credentials.client_secret)
            async with ApiSession(
                study.api.base_url, creds, request_timeout=study.api.timeout_s
            ) as session:
                client = RqsClient(session)
                for leaf in leaves:
                    assert leaf.task_id is not None
                    if await client.cancel(int(leaf.task_id)):
                        done.append(leaf.key)
            return done

        cancelled = anyio.run(go) if leaves else []
        for key in cancelled:
            state.restart_leaf(key)
    return {
        "cancelled": cancelled,
        "text": f"cancelled {len(cancelled)} of {len(leaves)} remote task(s)"
        + (f": {', '.join(cancelled[:10])}" if cancelled else ""),
    }
