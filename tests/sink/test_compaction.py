"""Compaction with the real state store, including crashes around the swap."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from harvester.sink import (
    cleanup_staging,
    cleanup_strays,
    discard_compaction,
    finalize_plan_shard,
    layout,
    prepare_compaction,
    swap_compaction,
    verify,
)
from harvester.sink import compaction as compaction_module
from harvester.state import PlannedShard, SqliteState

from ._data import DAY, JAN1, stage_segments, video

MONTHLY = layout(["region_code"], ("create_month",))
PART = "create_month=2023-01"


def harvest(tmp_path: Path) -> tuple[Path, Path, SqliteState]:
    """Two plan shards writing into one monthly partition, committed the orchestrator's way."""
    root, staging = tmp_path / "data", tmp_path / "staging"
    state = SqliteState(tmp_path / "study.sqlite")
    state.open_study("monthly", "fp", "0.1.0")
    plans = [PlannedShard("20230101-20230115", JAN1, JAN1 + 15 * DAY),
             PlannedShard("20230116-20230131", JAN1 + 15 * DAY, JAN1 + 31 * DAY)]  # fmt: skip
    state.add_plan_shards(plans)
    for n, plan in enumerate(plans):
        recs = [video(i, plan.start + i * 600) for i in range(n * 1000, n * 1000 + 500)]
        state.start_leaf(plan.key)
        window = (plan.start, plan.end)
        segs = stage_segments(staging, MONTHLY, plan.key, window, [recs[:300], recs])
        for seg in segs:
            state.checkpoint_page(plan.key, segment=seg.path, rows=seg.rows, cursor=None)
        state.mark_done(plan.key)
        paths = [s.path for s in state.segments(plan_key=plan.key)]
        files = finalize_plan_shard(root, staging, MONTHLY, plan.key, paths)
        state.commit_plan_shard(plan.key, files)
    return root, staging, state


def rows_seen(root: Path) -> tuple[int, int]:
    got = (
        duckdb.connect()
        .execute(f"SELECT count(*), count(DISTINCT id) FROM read_parquet('{root}/**/*.parquet')")
        .fetchall()
    )
    return got[0]


@pytest.mark.parametrize("atomic", [True, False])
def test_compaction_leaves_one_file_and_no_duplicates(
    tmp_path: Path, atomic: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not atomic:
        monkeypatch.setattr(compaction_module, "exchange", lambda a, b: False)
    root, staging, state = harvest(tmp_path)
    assert len(state.files(PART)) == 2 and rows_seen(root) == (1000, 1000)
    c = prepare_compaction(root, staging, PART, [f.path for f in state.files(PART)])
    assert c is not None and c.new_file.rows == 1000
    assert rows_seen(root) == (1000, 1000)  # the merged file is outside the root until swapped
    state.begin_compaction(c.partition, c.new_file.path, c.new_file.rows, c.old_files)
    swap_compaction(root, staging, c)
    state.finish_compaction(c.partition)
    discard_compaction(staging, c)
    assert [f.path for f in state.files(PART)] == [c.new_file.path]
    assert [p.name for p in (root / PART).iterdir()] == [c.new_file.path.split("/")[1]]
    assert rows_seen(root) == (1000, 1000)
    assert verify(root, {f.path: f.rows for f in state.files()}).ok
    assert prepare_compaction(root, staging, PART, [c.new_file.path]) is None


@pytest.mark.parametrize("crash_after", ["begin", "swap"])
def test_a_crash_around_the_swap_loses_nothing(tmp_path: Path, crash_after: str) -> None:
    root, staging, state = harvest(tmp_path)
    c = prepare_compaction(root, staging, PART, [f.path for f in state.files(PART)])
    assert c is not None
    state.begin_compaction(c.partition, c.new_file.path, c.new_file.rows, c.old_files)
    if crash_after == "swap":
        swap_compaction(root, staging, c)
    # start-up recovery: finish a swapped compaction, abandon the others, then clean
    for pending in state.pending_compactions():
        if (root / pending.new_path).exists():
            state.finish_compaction(pending.partition)
        else:
            state.abort_compaction(pending.partition)
    cleanup_strays(root, state.known_files())
    cleanup_staging(staging, state.known_segments())
    assert rows_seen(root) == (1000, 1000)
    assert verify(root, {f.path: f.rows for f in state.files()}).ok
    assert len(state.files(PART)) == (1 if crash_after == "swap" else 2)
    assert not (staging / "_compact").exists()
