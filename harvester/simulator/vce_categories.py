"""The VCE's categories beyond `video` over the RQS binding: the same comments, profiles, lists
and playlists the Research API's endpoints serve (`enrich.py`), asked for many targets at once.

A task names its targets in `condition_groups`: one `and` group whose conditions are `EQ` or
`IN` on the category's key (`video_id` for `comment`, `username` for the user categories,
`playlist_id` for `playlists`). Its records are the kind's dataset rows (the key first, the
fields under their dataset names, so followers carry `follower_username`), target by target
in the order asked, as the endpoint would serve them at the task's evaluation time: comments
with their replies, top 1,000 each. A target the API refuses (private, deleted, under 18)
gives no record. `fields` picks among the row's columns (the key is always returned). The
stage rules are the video category's: past `limit` a task keeps `limit` records picked by a
hash; at the test stage only targets of creators with at least 25,000 followers count, and
each task draws a fresh random sample.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from harvester._exceptions import QueryError
from harvester.kinds import CATEGORIES as KIND_OF_CATEGORY
from harvester.kinds import KINDS, Kind
from harvester.simulator import vce

if TYPE_CHECKING:
    from harvester.simulator.app import Simulator

__all__ = ["CATEGORIES", "CategoryQuery", "category_rows", "parse_category_query"]

#: VCE category -> enrichment kind (research-tools-facts, fact 14; the catalogue's).
CATEGORIES: Mapping[str, str] = {c: k.name for c, k in KIND_OF_CATEGORY.items()}
_MIX = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


class CategoryQuery:
    """A parsed task of a non-video category: its kind, targets (in order) and columns."""

    __slots__ = ("columns", "kind", "targets")

    def __init__(self, kind: Kind, targets: tuple[Any, ...], columns: tuple[str, ...]) -> None:
        self.kind = kind
        self.targets = targets
        self.columns = columns


def _value(kind: Kind, raw: object, where: str) -> Any:
    if kind.target_type == "string":
        if not isinstance(raw, str) or not raw:
            raise QueryError(f"{where}: {kind.target} values are non-empty strings")
        return raw
    text = str(raw)
    if not text.isdigit():
        raise QueryError(f"{where}: {kind.target} values are ids in decimal, not {raw!r}")
    return int(text)


def parse_category_query(category: str, condition_groups: object, fields: object) -> CategoryQuery:
    """The task's kind, targets and columns; QueryError (400 invalid_params) when the body
    does not name targets the category knows."""
    kind = KINDS[CATEGORIES[category]]
    key = kind.target
    if not isinstance(condition_groups, list) or len(condition_groups) != 1:
        raise QueryError(
            f"category {category!r}: condition_groups is one 'and' group of {key} conditions"
        )
    group = condition_groups[0]
    if not isinstance(group, Mapping) or str(group.get("operator", "")).lower() != "and":
        raise QueryError(f"category {category!r}: the group's operator must be 'and'")
    conditions = group.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise QueryError(f"category {category!r}: name its targets with {key} conditions")
    targets: list[Any] = []
    for i, c in enumerate(conditions):
        where = f"condition_groups[0].conditions[{i}]"
        if not isinstance(c, Mapping) or c.get("field") != key:
            raise QueryError(f"{where}: category {category!r} is queried by {key} only")
        op = str(c.get("operator", "")).lower()
        values = c.get("field_values")
        if op not in ("eq", "in") or not isinstance(values, list) or not values:
            raise QueryError(f"{where}: use EQ or IN with field_values, a non-empty list")
        if op == "eq" and len(values) != 1:
            raise QueryError(f"{where}: EQ takes one value; use IN for several")
        targets += [_value(kind, v, where) for v in values]
    names = [n for n, _ in kind.columns]
    if not isinstance(fields, str) or not fields.strip():
        raise QueryError(f"fields must be a comma-separated string of: {', '.join(names)}")
    asked = [f.strip() for f in fields.split(",") if f.strip()]
    unknown = [f for f in asked if f not in names]
    if unknown:
        raise QueryError(
            f"unknown field(s) for category {category!r}: {', '.join(unknown)}; "
            f"use: {', '.join(names)}"
        )
    columns = tuple(n for n in names if n == key or n in asked)
    return CategoryQuery(kind, tuple(dict.fromkeys(targets)), columns)


def _eligible(sim: Simulator, kind: Kind, target: Any) -> bool:
    """Test stage: whether the target's creator has enough followers to be returned."""
    if kind.target == "username":
        # The profile's follower_count: the same number the category's own profile serves.
        return vce.followers(sim.corpus, sim.enrich.usernames.get(target, target)) >= (
            vce.MIN_FOLLOWERS
        )
    if kind.name == "comments":
        video = sim.corpus.get(int(target))
        return video is not None and vce.eligible(sim.corpus, video)
    return True  # a playlist has no creator of its own in the corpus


def category_rows(
    sim: Simulator, query: CategoryQuery, limit: int, *, task_id: int, now: float
) -> list[dict[str, Any]]:
    """The task's records (see the module docstring), with the stage rules applied."""
    kind = query.kind
    renames = dict(kind.renames)
    rows: list[dict[str, Any]] = []
    test = sim.config.stage == "test"
    for target in query.targets:
        if test and not _eligible(sim, kind, target):
            continue
        found = sim.enrich.expected(kind.name, target, replies=kind.name == "comments", as_of=now)
        if isinstance(found, str):
            continue
        for r in found:
            row = {kind.target: target} | {renames.get(k, k): v for k, v in r.items()}
            rows.append({c: row.get(c) for c in query.columns})
    if len(rows) <= limit:
        return rows
    if test:
        keep = set(
            random.Random(f"vce-sample:{sim.config.seed}:{task_id}").sample(range(len(rows)), limit)
        )
    else:
        salt = sim.config.seed * _MIX & _MASK
        order = sorted(range(len(rows)), key=lambda i: ((i ^ salt) * _MIX) & _MASK)
        keep = set(order[:limit])
    return [r for i, r in enumerate(rows) if i in keep]
