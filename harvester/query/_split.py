"""A public-API query cut by the values of one of its IN lists (a window's second dimension).

Only a list in the query's `and` can be cut: every match has one of its values, so the
sub-queries (the list replaced by one value each) together select exactly what the query
selects. A video can match several values (two of the listed hashtags): sub-query `i` keeps a
video only if none of the values before `i` matches it, so each video belongs to exactly one
sub-query and their union has no duplicates, whichever order they run in, concurrently or on
different days. The API returns every exact match of a value (it matches a superset), so the
video skipped by sub-query `i` is returned to, and kept by, the first value it matches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from harvester.query._common import Record
from harvester.query._rest import RestCondition, RestQuery

__all__ = ["ValueSplit", "value_split"]

#: Fields whose IN values select sets a video's field is compared to exactly (keyword matches
#: substrings, create_date and the counts are ranges: none of them is a list to cut).
_LIST_FIELDS = ("region_code", "username", "hashtag_name", "effect_id", "music_id", "video_id")


@dataclass(frozen=True, slots=True)
class ValueSplit:
    """The query's `and` condition at `position`, cut into one sub-query per value."""

    query: RestQuery
    position: int

    @property
    def condition(self) -> RestCondition:
        return self.query.and_[self.position]

    @property
    def values(self) -> tuple[str, ...]:
        return self.condition.values

    def sub_query(self, index: int) -> RestQuery:
        c = self.condition
        and_ = list(self.query.and_)
        and_[self.position] = RestCondition("EQ", c.field_name, (c.values[index],))
        return RestQuery(tuple(and_), self.query.or_, self.query.not_)

    def keeps(self, index: int) -> Callable[[Record], bool]:
        """What sub-query `index` keeps of what it fetched: records no earlier value matches."""
        if index == 0:
            return lambda record: True
        earlier = RestQuery((RestCondition("IN", self.condition.field_name, self.values[:index]),))
        return lambda record: not earlier.matches(record)


def value_split(query: RestQuery) -> ValueSplit | None:
    """The longest IN list of the query's `and` to cut by value, or None when it has none."""
    best: int | None = None
    for i, c in enumerate(query.and_):
        if c.operation != "IN" or c.field_name not in _LIST_FIELDS or len(c.values) < 2:
            continue
        if best is None or len(c.values) > len(query.and_[best].values):
            best = i
    return None if best is None else ValueSplit(query, best)
