"""The enrichment state's refresh of unsettled targets, and its upgrade from schema 1."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from harvester.state.enrich import _SCHEMA, VERSION, EnrichState

DAY = 86_400
#: 02:00 UTC on 2023-01-10.
NIGHT = 1_673_316_000


def opened(path: Path) -> EnrichState:
    return EnrichState(path, daily_requests=10, daily_records=100)


def test_an_unsettled_target_is_reopened_once_a_day_with_its_replies_forgotten(
    tmp_path: Path,
) -> None:
    es = opened(tmp_path / "e.sqlite")
    settles = {"1": NIGHT + 5 * DAY, "2": NIGHT - DAY}
    assert es.add_targets("comments", ["1", "2", "3"], settles) == 3
    for t in ("1", "2", "3"):
        es.start("comments", t)
        es.checkpoint("comments", t, segment=f"comments/{t}-0", seq=0, rows=4, cursor=100)
    es.finish("comments", "1", [("1/7", 7)], fetched_at=NIGHT)
    es.finish("comments", "2", fetched_at=NIGHT)
    es.finish("comments", "3", fetched_at=NIGHT)
    es.start("comments", "1/7")
    es.checkpoint("comments", "1/7", segment="comments/1-7-0", seq=0, rows=2, cursor=None)
    es.finish("comments", "1/7", fetched_at=NIGHT)
    es.publish("comments", [("retrieved_date=2023-01-10/a.parquet", 14)], ["1", "1/7", "2", "3"])

    # The same UTC day: nothing is due yet.
    assert es.reopen_unsettled("comments", NIGHT + 3600) == ([], [])
    # The next night: only "1" (fetched before it settles); "2" had settled, "3" never will.
    reopened, dropped = es.reopen_unsettled("comments", NIGHT + DAY)
    assert (reopened, dropped) == (["1"], [])
    row = es.target("comments", "1")
    assert (row.status, row.cursor, row.pages, row.rows, row.file, row.stale) == (
        "pending",
        None,
        0,
        0,
        None,
        1,
    )
    assert [r.target for r in es.targets("comments")] == ["1", "2", "3"]  # its reply is gone
    assert es.stale("comments") == []  # not fetched again yet
    es.start("comments", "1")
    es.finish("comments", "1", fetched_at=NIGHT + DAY)
    assert es.stale("comments") == ["1"]
    assert es.unpublished("comments") == ["1"]
    es.publish(
        "comments",
        [("retrieved_date=2023-01-11/b.parquet", 5), ("retrieved_date=2023-01-10/c.parquet", 8)],
        ["1"],
        replaced=["retrieved_date=2023-01-10/a.parquet"],
        refreshed=["1"],
    )
    assert es.stale("comments") == [] and es.unpublished("comments") == []
    assert es.files("comments") == [
        ("retrieved_date=2023-01-10/c.parquet", 8),
        ("retrieved_date=2023-01-11/b.parquet", 5),
    ]
    # A newer video of a known target moves its settling later, never earlier.
    es.add_targets("comments", ["2"], {"2": NIGHT + 9 * DAY})
    es.add_targets("comments", ["2"], {"2": NIGHT})
    assert es.target("comments", "2").settles_at == NIGHT + 9 * DAY
    es.close()


def test_a_schema_1_file_is_upgraded_and_keeps_its_targets(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    for statement in _SCHEMA.split(";"):
        db.execute(statement)
    db.execute(
        "INSERT INTO targets (kind, target, status, pages, rows, file, updated_at) "
        "VALUES ('users', 'alice', 'done', 1, 1, 'x.parquet', 1.0)"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    es = opened(path)
    try:
        row = es.target("users", "alice")
        assert (row.status, row.rows, row.file) == ("done", 1, "x.parquet")
        assert (row.settles_at, row.fetched_at, row.stale) == (None, None, 0)
        # Targets from before settling was kept are never refreshed.
        assert es.reopen_unsettled("users", NIGHT) == ([], [])
    finally:
        es.close()
    (version,) = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()
    assert version == VERSION == 2
