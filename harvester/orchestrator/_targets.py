"""Where an enrichment's state and staging live, and which targets a block has: the light part
of the enrichment run, which `plan` and `status` use without loading the HTTP client or Arrow."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harvester._exceptions import ConfigError
from harvester._study_state import existing_state, open_state
from harvester.config import Enrichment, Study
from harvester.kinds import FOLLOWERS_DAILY_RECORDS, FOLLOWERS_DAILY_REQUESTS, KINDS
from harvester.plan.enrich import target_condition
from harvester.state import StateStore
from harvester.state.enrich import EnrichState

if TYPE_CHECKING:
    from harvester.sink.store import DatasetStore

__all__ = [
    "enrich_staging",
    "enrich_stagings",
    "existing_enrich_state",
    "open_enrich_state",
    "read_targets",
]


def enrich_staging(study: Study, e: Enrichment) -> DatasetStore:
    """Where the block's pages wait for their target's publication: beside the state file, or,
    with the state in PostgreSQL, where every worker reaches them: beside the video folder, or,
    for a dataset in a bucket, under the block's dataset's `_staging/` prefix, which readers
    skip (never in a dataset a reader scans). The blocks of a folder share one staging area:
    segment names start with the kind."""
    from harvester.sink.dataset import STAGING
    from harvester.sink.store import LocalStore, open_dataset

    if study.state_url is None:
        return LocalStore(study.state_path.with_name(study.state_path.name + ".enrich-staging"))
    if e.output_url is not None:
        return open_dataset(e.output_url).child(STAGING)
    return LocalStore(study.output_path.with_name(study.output_path.name + ".enrich-staging"))


def enrich_stagings(study: Study) -> dict[str, DatasetStore]:
    """Each block's staging area (`enrich_staging`), by kind."""
    return {e.kind: enrich_staging(study, e) for e in study.enrichments}


def open_enrich_state(study: Study, state: StateStore | None = None) -> EnrichState:
    """The study's enrichment state, in its `state` (opened here when not given, and closed
    with the enrichment state then)."""
    if state is not None:
        return _enrichments(state)
    return _enrichments(open_state(study), owning=True)


def existing_enrich_state(study: Study) -> EnrichState | None:
    """The study's enrichment state if an enrichment ever started (nothing is created)."""
    store = existing_state(study) if study.enrichments else None
    if store is None:
        return None
    es = _enrichments(store, owning=True)
    if es.started():
        return es
    es.close()
    return None


def _enrichments(state: StateStore, *, owning: bool = False) -> EnrichState:
    es = state.enrichments(
        daily_requests=FOLLOWERS_DAILY_REQUESTS, daily_records=FOLLOWERS_DAILY_RECORDS
    )
    es.owns_store = owning
    return es


def read_targets(study: Study, e: Enrichment) -> dict[str, int | None]:
    """The block's targets in the video dataset, deduplicated, as text (ids in decimal), each
    with the creation time of its newest video (None when the study does not fetch
    `create_time`): a target's counts settle `settle_days` after it."""
    kind = KINDS[e.kind]
    col = kind.source_column
    newest = "max(create_time)" if "create_time" in study.fields else "NULL"
    sql = (
        f"SELECT CAST({col} AS VARCHAR), {newest} FROM videos "
        f"WHERE {target_condition(kind, e.where)} GROUP BY 1"
    )
    index = study.enrichments.index(e)
    import duckdb  # only for studies with [[enrich]] blocks

    from harvester.sink.readers import duckdb_view
    from harvester.sink.store import open_dataset

    try:
        with duckdb.connect() as db:
            # The video dataset, a folder or a bucket, as the view `videos`.
            if not duckdb_view(db, "videos", open_dataset(study.dataset)):
                return {}
            rows = db.execute(sql + " ORDER BY 1").fetchall()
    except duckdb.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"{study.config_path.name}: enrich[{index}].where: DuckDB cannot run it over the "
            f"video dataset ({first}); write SQL over its columns, like comment_count >= 5"
        ) from None
    return {str(t): None if ct is None else int(ct) for t, ct in rows}
