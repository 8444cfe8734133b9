"""The orchestrator's sequence, crashed at each step, resumed, and checked for exactly-once."""

from __future__ import annotations

from pathlib import Path

import pytest

from harvester.api._records import fresh_records
from harvester.sink import (
    cleanup_staging,
    cleanup_strays,
    finalize_plan_shard,
    normalise_page,
    read_ids,
    remove_leaves,
    verify,
    write_segment,
)
from harvester.state import PlannedShard, SqliteState

from ._data import DAY, FULL, JAN1, NOW, video

PLAN = PlannedShard("20230101-20230101", JAN1, JAN1 + DAY)
PAGES = [[video(i, JAN1 + i * 60) for i in range(p * 40, p * 40 + 50)] for p in range(6)]


class Crash(Exception):
    pass


def run(
    root: Path, staging: Path, state_path: Path, crash: str | None, opened: list[SqliteState]
) -> SqliteState:
    """One run: start-up recovery, then pages, then finalize; raise Crash at step `crash`."""
    state = SqliteState(state_path)
    opened.append(state)
    state.open_study("s", "fp", "0.1.0")
    state.lock()
    state.add_plan_shards([PLAN])
    state.reset_running()
    cleanup_strays(root, state.known_files())
    cleanup_staging(staging, state.known_segments())
    if state.shard(PLAN.key).status == "pending":
        leaf = state.start_leaf(PLAN.key)
        seen = read_ids(staging, [s.path for s in state.segments(leaf_key=leaf.key)])
        start = 0 if leaf.cursor is None else leaf.cursor
        for n in range(start, len(PAGES)):
            page = normalise_page(
                fresh_records(PAGES[n], seen), FULL, leaf_key=leaf.key,
                window=(PLAN.start, PLAN.end), source="research-api", retrieved_at=NOW,
            )  # fmt: skip
            seq = state.shard(leaf.key).pages
            seg = write_segment(staging, leaf.key, seq, page.batch) if page.row_count else None
            if crash == f"page{n}":
                raise Crash  # segment renamed, state not told
            state.checkpoint_page(
                leaf.key, segment=seg.path if seg else None, rows=page.row_count, cursor=n + 1
            )
        state.mark_done(leaf.key)
    if state.plan_ready(PLAN.key):
        segments = [s.path for s in state.segments(plan_key=PLAN.key)]
        files = finalize_plan_shard(root, staging, FULL, PLAN.key, segments)
        if crash == "finalize":
            raise Crash  # files renamed into place, state not told
        leaves = state.commit_plan_shard(PLAN.key, files)
        if crash == "commit":
            raise Crash  # staging not yet removed
        remove_leaves(staging, leaves)
    return state


@pytest.mark.parametrize("crash", ["page0", "page3", "page5", "finalize", "commit"])
def test_every_video_exactly_once_after_a_crash(tmp_path: Path, crash: str) -> None:
    root, staging, db = tmp_path / "data", tmp_path / "staging", tmp_path / "s.sqlite"
    opened: list[SqliteState] = []
    with pytest.raises(Crash):
        run(root, staging, db, crash, opened)
    opened[0].close()  # what the OS does for a dead process: lock and connection go
    state = run(root, staging, db, None, opened)
    report = verify(root, {f.path: f.rows for f in state.files()}, schema=FULL.file_schema)
    assert report.ok, report
    assert report.rows == 6 * 40 + 10  # pages overlap by ten videos
    assert not any(p.is_file() for p in staging.rglob("*"))
    state.close()
