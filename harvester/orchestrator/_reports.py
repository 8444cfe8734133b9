"""`plan`, `status`, `verify` and `cancel`: what a user or a scheduler asks between runs.

Each returns a JSON-able dict with a `text` rendering for the terminal. None of them takes the
run lock: they read (or, for cancel, touch only remote tasks), so they work beside a live run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import anyio

from harvester._exceptions import ConfigError
from harvester._quarantine import quarantine_info
from harvester._study_state import existing_state, state_location
from harvester.config import Credentials, Study
from harvester.orchestrator._budget import quota_day_forecast
from harvester.orchestrator._figures import about
from harvester.orchestrator._settle import settling_status, upkeep_plan
from harvester.plan import Estimate, FinishedShard, estimate_plan, plan_study
from harvester.plan.sample import completeness, describe, sample_plan
from harvester.state import utc_day

# `verify` and `cancel` import the sink (Arrow) and the HTTP client where they need them:
# `plan` and `status` must answer in well under a second.

__all__ = [
    "cancel_study",
    "check_full_scan",
    "day_report",
    "full_scan_line",
    "plan_report",
    "quota_report",
    "status_report",
    "verify_study",
]


def _table(rows: list[tuple[str, Any]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


def _quarantine_row(study: Study, n: int) -> tuple[str, str]:
    folder = study.output_path.with_name(study.output_path.name + ".quarantine")
    return ("quarantined", f"{n:,} record(s) without a usable id, kept in {folder}")


def _estimate(study: Study) -> tuple[Any, Estimate]:
    plan = plan_study(study)
    finished: list[FinishedShard] = []
    state = existing_state(study)
    if state is not None:
        with state:
            finished = [FinishedShard(*cost) for cost in state.committed_costs()]
    return plan, estimate_plan(plan, study, finished)


def full_scan_line(study: Study, est: Estimate) -> str | None:
    """One line saying that the public API would be asked for every video of the study's dates
    (nothing positive is left to send), and what that costs; None when something positive is."""
    if study.translation is None or not study.translation.full_scan:
        return None
    key = "study.condition_groups" if study.seed_query is not None else "study.query"
    basis = {
        "observed": "as observed so far",
        "configured": "as expected_records_per_day says",
        "prior": "a guess: set expected_records_per_day to the platform's rate for a real figure",
    }[est.basis]
    return (
        f"{study.config_path.name}: {key}: nothing positive is left to send to the public API "
        "(not conditions on approximately matched fields are applied locally), so it would "
        f"return every video of {study.start_date}..{study.end_date} to be filtered here: "
        f"about {est.requests:,} requests and {est.records:,} records, "
        f"{est.quota_days:,.1f} days of quota at {est.records_per_day:,.0f} records a day "
        f"({basis})"
    )


def check_full_scan(study: Study) -> None:
    """Refuse (ConfigError, exit 2) a study that would harvest every video of its dates, unless
    it says `allow_full_scan = true`."""
    if study.translation is None or not study.translation.full_scan or study.allow_full_scan:
        return
    line = full_scan_line(study, _estimate(study)[1])
    assert line is not None
    raise ConfigError(
        f"{line}; add a positive condition (region_code, hashtag_name, keyword, ...), "
        "or set allow_full_scan = true in [study] to harvest it all and filter locally"
    )


def plan_report(study: Study) -> dict[str, Any]:
    check_full_scan(study)
    plan, est = _estimate(study)
    forecast = quota_day_forecast(study, est.records_per_day, plan)
    if forecast.impossible and est.basis != "prior":
        raise ConfigError(forecast.impossible)
    warnings = list(study.warnings)
    if forecast.impossible:
        warnings.append(forecast.impossible)
    scan = full_scan_line(study, est)
    if scan is not None:
        warnings.insert(0, scan + " (allow_full_scan = true)")
    report: dict[str, Any] = {
        "study": study.name,
        "source": study.source,
        "period": f"{study.start_date} .. {study.end_date}",
        "window_days": study.window_days,
        "shards": len(plan),
        "shards_done": est.shards_done,
        "estimate_basis": est.basis,
        # Nothing observed yet: every number below follows from records_per_day, a guess.
        "estimate_assumed": est.basis != "observed",
        "records_per_day": round(est.records_per_day, 1),
        "estimated_requests": est.requests,
        "estimated_records": est.records,
        "estimated_tasks": est.tasks,
        "estimated_splits": est.splits,
        "quota_days": round(est.quota_days, 2),
        "minimum_quota_days": round(forecast.minimum, 2),
        "forecast_quota_days": round(forecast.forecast, 2),
        "minimum_requests": forecast.minimum_requests,
        "minimum_records": forecast.minimum_records,
        "window_days_chosen": forecast.window_days,
        "first_shards": [s.key for s in plan.shards[:5]],
        "full_scan": scan is not None,
        "warnings": warnings,
    }
    count: Callable[[float], str]
    if est.basis == "observed":
        count, mark, why = "{:,}".format, "", ""
        rate_text = f"{report['records_per_day']:,} (observed)"
    else:
        # A precise figure from a guessed rate would mislead: say it is a guess, and how good.
        count, mark = about, "~"
        rate = f"{est.records_per_day:,.0f}"
        source = (
            "study.expected_records_per_day"
            if est.basis == "configured"
            else "harvester's default; set study.expected_records_per_day if you know better"
        )
        rate_text = f"{rate} (assumed: {source})"
        why = f" (assumed {rate} records/day; the estimate updates after the first windows)"
    rows = [
        ("study", f"{study.name} ({study.source})"),
        ("period", report["period"]),
        ("shards", f"{len(plan)} windows of {study.window_days}d, {est.shards_done} done"),
        ("records/day", rate_text),
        ("est. requests", f"{count(est.requests)}{why}"),
        ("est. records", count(est.records)),
        (
            "quota days",
            f"{mark}{report['quota_days']} (at {study.quota.daily_requests:,} requests "
            f"and {study.quota.daily_records:,} records a day)",
        ),
        (
            "minimum",
            f"{forecast.minimum:.2f} quota-days ({forecast.minimum_requests:,} requests, "
            f"{forecast.minimum_records:,} records: full pages, nothing fetched twice)",
        ),
        (
            "forecast",
            f"{forecast.forecast:.2f} quota-days ({math.ceil(forecast.forecast)} daily runs), in "
            f"windows of about {forecast.window_days}d sized to {study.quota.window_fraction:.0%} "
            f"of a day's quota",
        ),
    ]
    sample = sample_plan(study, len(plan))
    if sample is not None:
        # Test stage: one task a window, never split; the limit caps every window's records.
        requests = 2 * sample.windows  # a create and one result page per window
        days = max(sample.quota_days, -(-requests // study.quota.daily_requests))
        records = min(est.records, sample.max_records)
        report.update(
            estimated_requests=requests,
            estimated_tasks=sample.windows,
            estimated_splits=0,
            estimated_records=records,
            quota_days=days,
            completeness="sample",
            limit_per_window=sample.limit_per_window,
        )
        rows[4:] = [
            ("est. requests", f"{requests:,}"),
            ("est. records", f"at most {records:,}"),
            ("est. tasks", f"{sample.windows:,} (one per window, never split)"),
            (
                "sample",
                f"at most {sample.limit_per_window:,} random videos per window "
                f"({study.quota.daily_records:,} a day over {sample.windows:,} windows)",
            ),
            ("quota days", f"{days} (test stage)"),
        ]
    elif study.source != "research-api":
        rows.insert(5, ("est. tasks", f"{count(est.tasks)} (+{count(est.splits)} splits)"))
    upkeep = upkeep_plan(study, est.records_per_day, datetime.now(UTC).date())
    report["upkeep"] = upkeep.info
    rows += upkeep.rows
    warnings += upkeep.warnings
    if study.enrichments:
        from harvester.orchestrator._enrich_reports import enrich_plan, enrich_upkeep, plan_lines

        report["enrichments"] = enrich_plan(study, est.records)
        rows += plan_lines(report["enrichments"])
        if "daily_requests_to_stay_current" in upkeep.info:
            rows += enrich_upkeep(study, report["enrichments"], est.records_per_day)
    report["text"] = _table(rows) + "".join(f"\nwarning: {w}" for w in warnings)
    return report


def quota_report(study: Study, *, now: float | None = None) -> dict[str, Any]:
    """Today's use of the study's ledger (its pool's, when it names one) by study and worker."""
    day = utc_day(now)
    quota = study.quota
    ledger = f"pool {quota.pool}" if quota.pool else f"study {study.name}"
    report: dict[str, Any] = {
        "ledger": ledger,
        "pool": quota.pool,
        "share": quota.share,
        "day": day,
        "daily_requests": quota.daily_requests,
        "daily_records": quota.daily_records,
        "requests": 0,
        "records": 0,
        "exhausted": False,
        "by_worker": [],
    }
    state = existing_state(study, pooled=True)
    if state is not None:
        with state:
            used, rows = state.usage(day), state.usage_by_worker(day)
        report.update(requests=used.requests, records=used.records, exhausted=used.exhausted)
        report["by_worker"] = [
            {"study": u.study, "worker": u.worker, "requests": u.requests, "records": u.records}
            for u in rows
        ]
    head = (
        f"{ledger}, {day} UTC: {report['requests']:,} of {quota.daily_requests:,} requests, "
        f"{report['records']:,} of {quota.daily_records:,} records"
        + (" (exhausted)" if report["exhausted"] else "")
    )
    if quota.share is not None:
        mine = sum(u["requests"] for u in report["by_worker"] if u["study"] == study.name)
        head += (
            f"\n{study.name} may take {quota.share:.0%} of it: "
            f"{mine:,} of {int(quota.daily_requests * quota.share):,} requests used"
        )
    lines = [("study", "worker", "requests", "records")] + [
        (u["study"], u["worker"] or "-", f"{u['requests']:,}", f"{u['records']:,}")
        for u in report["by_worker"]
    ]
    widths = [max(len(r[i]) for r in lines) for i in range(4)]
    table = "\n".join(
        "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in lines
    )
    report["text"] = head + ("\n" + table if report["by_worker"] else "\nno use yet today")
    return report


def day_report(study: Study, *, now: float | None = None) -> dict[str, int]:
    """What a run that stopped for the day leaves: windows committed today, and windows begun
    and not finished (with their pages staged), which the next day resumes or restarts."""
    state = existing_state(study)
    if state is None:
        return {"committed_today": 0, "in_flight": 0, "in_flight_pages": 0}
    midnight = (time.time() if now is None else now) // 86_400 * 86_400
    with state:
        shards = state.shards()
    begun = [s for s in shards if s.status in ("pending", "running") and (s.pages or s.task_id)]
    return {
        "committed_today": sum(1 for s in shards if (s.committed_at or 0) >= midnight),
        "in_flight": len(begun),
        "in_flight_pages": sum(s.pages for s in begun),
    }


def status_report(study: Study, *, now: float | None = None) -> dict[str, Any]:
    state = existing_state(study)
    if state is None:
        return {
            "study": study.name,
            "started": False,
            "text": f"{study.name}: not started (no state at {state_location(study)})",
        }
    with state:
        s = state.status(utc_day(now))
        parked = [
            {"shard": r.key, "kind": r.error_kind, "error": r.last_error}
            for r in state.shards(status="parked")
        ]
        days_used = sum(1 for u in state.quota_days() if u.requests)
        finished = [FinishedShard(*cost) for cost in state.committed_costs()]
        settle = settling_status(study, state, time.time() if now is None else now)
    plan = plan_study(study)
    est = estimate_plan(plan, study, finished)
    minimum = quota_day_forecast(study, est.records_per_day, plan).minimum
    quota = study.quota
    report: dict[str, Any] = {
        "study": study.name,
        "started": True,
        "shards": dict(s.shards),
        "plan_shards": s.plan_shards,
        "committed_plan_shards": s.committed_plan_shards,
        "complete": s.plan_shards > 0 and s.committed_plan_shards == s.plan_shards,
        "records": s.records,
        # Returned by the public API, then dropped by the exact re-check of the study's query.
        "dropped_by_exact_filter": s.filtered,
        "pages": s.pages,
        "files": s.files,
        "dataset_rows": s.dataset_rows,
        "quota_day": s.today.day,
        "requests_today": s.today.requests,
        "records_today": s.today.records,
        "requests_left_today": max(0, quota.daily_requests - s.today.requests),
        "records_left_today": max(0, quota.daily_records - s.today.records),
        "quota_exhausted_today": s.today.exhausted,
        "quota_days_used": days_used,
        "minimum_quota_days": round(minimum, 2),
        "errors": dict(s.errors),
        "parked": parked,
        **completeness(study, s.committed_plan_shards),
        **quarantine_info(study.output_path, study.output_url),
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
        *_exact_filter_row(study, s.records, s.filtered),
        (
            "quota today",
            f"{s.today.requests:,}/{quota.daily_requests:,} requests, "
            f"{s.today.records:,}/{quota.daily_records:,} records ({s.today.day} UTC)"
            + (", exhausted" if s.today.exhausted else ""),
        ),
        (
            "quota days",
            f"{days_used} used; the study needs at least {minimum:.2f} "
            f"({est.basis} {est.records_per_day:,.0f} records a day)",
        ),
        ("errors", ", ".join(f"{k} {v}" for k, v in sorted(s.errors.items())) or "none"),
        ("completeness", describe(report)),
        *settle.rows,
    ]
    report["settling"] = settle.info
    if report["quarantined_records"]:
        rows.append(_quarantine_row(study, report["quarantined_records"]))
    if study.enrichments:
        from harvester.orchestrator._enrich_reports import enrich_status, status_lines

        report["enrichments"] = enrich_status(study, s.today.day)
        rows += status_lines(report["enrichments"])
    text = _table(rows)
    for p in parked[:10]:
        text += f"\nparked: {p['shard']} ({p['kind']}): {p['error']}"
    report["text"] = text
    return report


def _exact_filter_row(study: Study, kept: int, dropped: int) -> list[tuple[str, str]]:
    """How approximate the public API was: records it returned that the exact query dropped."""
    if study.source != "research-api":
        return []
    returned = kept + dropped
    share = f" ({dropped / returned:.1%})" if returned else ""
    return [("exact filter", f"{dropped:,} of {returned:,} returned records dropped{share}")]


def verify_study(study: Study) -> dict[str, Any]:
    from harvester.sink import layout, open_dataset, verify

    state = existing_state(study)
    if state is None:
        if study.output_url is not None:
            # A missing or unreachable bucket is a mistyped output.path (ConfigError, exit 2),
            # not a study that has yet to run.
            open_dataset(study.output_url)
        return {"ok": False, "text": f"{study.name}: nothing to verify (no state yet)"}
    with state:
        expected = {f.path: f.rows for f in state.files()}
        summary = state.status()
    schema = layout(study.fields, study.partition_by).file_schema
    r = verify(open_dataset(study.dataset), expected, schema=schema)
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
        **completeness(study, summary.committed_plan_shards),
        **quarantine_info(study.output_path, study.output_url),
    }
    lines = [
        f"{'ok' if r.ok else 'FAILED'}: {r.files:,} files, {r.rows:,} rows; "
        f"{summary.committed_plan_shards}/{summary.plan_shards} plan shards committed"
        + ("" if complete else " (harvest not complete)"),
        f"completeness: {describe(report)}",
    ]
    if report["quarantined_records"]:
        lines.append(": ".join(_quarantine_row(study, report["quarantined_records"])))
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
    if study.enrichments:
        from harvester.orchestrator._enrich_reports import verify_enrichments, verify_lines

        report["enrichments"] = verify_enrichments(study)
        report["ok"] = report["ok"] and all(i["ok"] for i in report["enrichments"])
        lines += verify_lines(report["enrichments"])
    report["text"] = "\n".join(lines)
    return report


def cancel_study(study: Study, credentials: Credentials) -> dict[str, Any]:
    """Cancel the remote tasks of leaves not yet paged; their next run creates fresh ones."""
    from harvester.api import PyrqsBackend, RetryPolicy, RqsClient
    from harvester.orchestrator._backends import api_session, sdk_client
    from harvester.orchestrator._cancel import cancel_tasks, cancellable

    if study.source == "research-api":
        return {"cancelled": [], "text": "research-api studies have no remote tasks to cancel"}
    state = existing_state(study)
    if state is None:
        return {"cancelled": [], "text": f"{study.name}: not started"}
    with state:
        leaves = cancellable(state.shards())

        async def go() -> list[str]:
            # The default retries, not the study's: a cancel is one short call a task.
            async with api_session(study, credentials, retry=RetryPolicy()) as session:
                backend: RqsClient | PyrqsBackend = RqsClient(session)
                if study.source == "pyrqs":  # through the SDK: it holds the VCE's credentials
                    backend = PyrqsBackend(sdk_client(study), anyio.CapacityLimiter(1))
                return await cancel_tasks(backend, state, leaves)

        cancelled = anyio.run(go) if leaves else []
    return {
        "cancelled": cancelled,
        "text": f"cancelled {len(cancelled)} of {len(leaves)} remote task(s)"
        + (f": {', '.join(cancelled[:10])}" if cancelled else ""),
    }
