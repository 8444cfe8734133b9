"""The VCE's test stage as the simulator plays it: random samples of popular creators' videos.

TikTok's test stage answers a query with a random sample of its matches, at most 5,000 records
a day, and only from creators with at least 25,000 followers. The corpus has no follower
counts, so each creator gets one from its place in the corpus's creator pool, the same place
that makes it post often: a heavy tail where about a third of the videos come from creators
above the threshold.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from harvester.simulator.corpus import _pools

if TYPE_CHECKING:
    from harvester.query import SeedQuery
    from harvester.simulator.app import Simulator
    from harvester.simulator.corpus import Corpus

__all__ = ["MIN_FOLLOWERS", "eligible", "eligible_ids", "followers", "sample"]

#: Test stage: only creators with at least this many followers.
MIN_FOLLOWERS = 25_000
#: Followers of the corpus's most popular creator; the n-th has TOP / n.
_TOP = 50_000_000


@functools.lru_cache(maxsize=8)
def _ranks(seed: int) -> Mapping[str, int]:
    # The pools are built once per seed (corpus._pools), and so is this index of them.
    return {name: i for i, name in enumerate(_pools(seed).usernames)}


def followers(corpus: Corpus, username: str) -> int:
    """The creator's follower count (0 for a name the corpus does not know)."""
    rank = _ranks(corpus.seed).get(username)
    return 0 if rank is None else _TOP // (rank + 1)


def eligible(corpus: Corpus, video: Mapping[str, Any]) -> bool:
    """Whether the test stage may return `video`."""
    return followers(corpus, video["username"]) >= MIN_FOLLOWERS


def sample(ids: list[int], limit: int, *, seed: int, task_id: int) -> list[int]:
    """`limit` of `ids` drawn at random, afresh for every task (sorted, as pages are)."""
    if len(ids) <= limit:
        return ids
    return sorted(random.Random(f"vce-sample:{seed}:{task_id}").sample(ids, limit))


def eligible_ids(sim: Simulator, query: SeedQuery | list[Any], start: int, end: int) -> set[int]:
    """The test stage's population for a study: the oracle's ids from eligible creators."""
    ids = sim.oracle(query, start, end)
    corpus = sim.corpus
    return {i for i in ids if (v := corpus.get(i)) is not None and eligible(corpus, v)}
