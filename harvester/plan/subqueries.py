"""A window's second dimension: the values of one IN list of the query, harvested apart.

A day whose records need more requests than a day's quota leaves a window cannot be cut in
time (the public API asks whole days), but it can be cut by value: `region_code IN [NL, BE,
DE]` becomes three sub-queries of the same day, one per value, whose union is the window. The
leaf of sub-query `i` is keyed `<window key>_q<i>_<value>`: the index says which value (the
plan's query fixes the list's order), the value is there for a reader and cut to the key's
alphabet. Window keys never hold `_`, so the window is read back from the key unambiguously.
"""

from __future__ import annotations

import re

from harvester.plan.windows import Window

__all__ = ["LeafKey", "leaf_window", "parse_leaf_key", "sub_key"]

_UNSAFE = re.compile(r"[^0-9A-Za-z]")
_SUB = "_q"


def sub_key(window_key: str, index: int, value: str) -> str:
    """The key of sub-query `index` (value `value`) of the window keyed `window_key`."""
    return f"{window_key}{_SUB}{index}_{_UNSAFE.sub('', value)[:24]}"


class LeafKey:
    """A leaf key read back: its window, and which sub-query (None: the whole query)."""

    __slots__ = ("index", "suffix", "window")

    def __init__(self, window: Window, index: int | None, suffix: str) -> None:
        self.window = window
        self.index = index
        #: What follows the window key (`""` for the whole query): a time split keeps it.
        self.suffix = suffix


def parse_leaf_key(key: str) -> LeafKey:
    """ValueError when `key` is neither a window key nor a window key with a sub-query."""
    head, sep, rest = key.partition(_SUB)
    if not sep:
        return LeafKey(Window.from_key(key), None, "")
    index, _, _value = rest.partition("_")
    if not index.isdigit():
        raise ValueError(f"{key!r} is not a leaf key")
    return LeafKey(Window.from_key(head), int(index), sep + rest)


def leaf_window(key: str) -> Window:
    return parse_leaf_key(key).window
