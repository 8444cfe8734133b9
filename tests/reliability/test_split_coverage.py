"""Property: however a plan shard's windows are split (saturated RQS tasks down to one second,
failing public-API windows down to one day), the leaves recorded in state tile the plan shard
exactly, so every record belongs to exactly one leaf and none falls between them."""

from __future__ import annotations

import itertools
import random
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from harvester import StateError
from harvester.plan import DAY, Window
from harvester.plan.shards import split_window
from harvester.state import PlannedShard, SqliteState

EPOCH_2022 = 1_640_995_200


def _leaves(state: SqliteState, plan_key: str) -> list[tuple[int, int]]:
    return sorted((s.start, s.end) for s in state.shards(plan_key=plan_key) if s.status != "split")


@settings(max_examples=60, deadline=None)
@given(
    day=st.integers(0, 900),
    days=st.integers(1, 30),
    splits=st.integers(0, 40),
    rnd=st.randoms(use_true_random=False),
)
def test_splits_through_state_preserve_coverage(
    day: int, days: int, splits: int, rnd: random.Random
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        state = SqliteState(Path(folder) / "s.sqlite")
        try:
            start = EPOCH_2022 + day * DAY
            plan = Window(start, start + days * DAY)
            state.add_plan_shards([PlannedShard(plan.key, plan.start, plan.end)])
            for _ in range(splits):
                pending = [s for s in state.shards(plan_key=plan.key) if s.status == "pending"]
                leaf = rnd.choice(pending)
                min_seconds = rnd.choice((1, DAY))  # RQS saturation, public-API failure
                halves = split_window(Window(leaf.start, leaf.end), min_seconds=min_seconds)
                if halves is None:
                    continue
                state.split(leaf.key, [PlannedShard(w.key, w.start, w.end) for w in halves])
            leaves = _leaves(state, plan.key)
            # Contiguous, non-overlapping, from the plan's start to its end.
            assert leaves[0][0] == plan.start and leaves[-1][1] == plan.end
            assert all(a[1] == b[0] for a, b in itertools.pairwise(leaves))
            assert all(s < e for s, e in leaves)
            # Any instant of the plan belongs to exactly one leaf.
            for _ in range(20):
                t = rnd.randrange(plan.start, plan.end)
                assert sum(s <= t < e for s, e in leaves) == 1
            # Keys are unique and name their windows.
            keys = [s.key for s in state.shards(plan_key=plan.key) if s.status != "split"]
            assert len(keys) == len(set(keys))
        finally:
            state.close()


@settings(max_examples=60, deadline=None)
@given(
    cut=st.integers(1, 2 * DAY - 1),
    gap=st.integers(-3600, 3600).filter(lambda g: g != 0),
)
def test_state_refuses_children_that_do_not_tile(cut: int, gap: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        state = SqliteState(Path(folder) / "s.sqlite")
        try:
            plan = Window(EPOCH_2022, EPOCH_2022 + 2 * DAY)
            state.add_plan_shards([PlannedShard(plan.key, plan.start, plan.end)])
            mid = plan.start + cut
            left = Window(plan.start, mid)
            right_start = min(max(mid + gap, plan.start + 1), plan.end - 1)
            if right_start == mid:
                return
            right = Window(right_start, plan.end)
            children = [PlannedShard(w.key, w.start, w.end) for w in (left, right)]
            try:
                state.split(plan.key, children)
            except StateError:
                pass
            else:
                raise AssertionError("a gap or an overlap between children was accepted")
            assert _leaves(state, plan.key) == [(plan.start, plan.end)]
        finally:
            state.close()
