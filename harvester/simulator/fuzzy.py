"""Approximate matching, as the public Research API does it: its query guide says conditions are
matched with fuzzy string search, so EQ/IN on a string field also take near strings.

"Near" is what a fuzzy search engine typically forgives: another case, a prefix of the stored
value, or one edit (insertion, deletion, substitution). Region codes are matched case-blind only:
at two letters, one edit would make every code match dozens of others. A `not` condition uses
the same approximate match, so a server-side NOT also excludes near strings, which is why the
harvester never sends one on these fields. The oracle stays exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from harvester.query import RestCondition, RestQuery

__all__ = ["FUZZY_FIELDS", "approximate_predicate", "near"]

Record = Mapping[str, Any]
Predicate = Callable[[Record], bool]

#: The public API's string conditions matched approximately, and the record field each reads.
FUZZY_FIELDS: Mapping[str, str] = {
    "username": "username",
    "hashtag_name": "hashtag_names",
    "effect_id": "effect_ids",
    "keyword": "video_description",
    "music_id": "music_id",
    "region_code": "region_code",
}


def _one_edit(a: str, b: str) -> bool:
    """Whether `a` and `b` differ by exactly one insertion, deletion or substitution."""
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) > len(b):
        a, b = b, a
    i = 0
    while i < len(a) and a[i] == b[i]:
        i += 1
    if len(a) == len(b):
        return a[i + 1 :] == b[i + 1 :]
    return a[i:] == b[i + 1 :]


def near(wanted: str, value: str) -> bool:
    """`value` is what a fuzzy search for `wanted` finds: the same up to case, an extension of
    it (prefix match), or one edit away."""
    w, v = wanted.casefold(), value.casefold()
    return v == w or (len(w) >= 2 and v.startswith(w)) or (len(w) >= 3 and _one_edit(w, v))


def _any_near(wanted: frozenset[str], values: Iterable[str]) -> bool:
    return any(near(w, v) for v in values for w in wanted)


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, int) and not isinstance(value, bool):
        return [str(value)]
    if isinstance(value, list):
        return [x for x in value if isinstance(x, str)]
    return []


def _fuzzy(c: RestCondition) -> Predicate | None:
    key = FUZZY_FIELDS.get(c.field_name)
    if key is None or c.operation not in ("EQ", "IN"):
        return None
    wanted = frozenset(c.values)
    if c.field_name == "region_code":
        folded = frozenset(w.casefold() for w in wanted)
        return lambda r: isinstance(v := r.get(key), str) and v.casefold() in folded
    if c.field_name == "keyword":
        # A keyword is looked for in the description: as a substring, or as a near word.
        def keyword(r: Record) -> bool:
            d = r.get(key)
            if not isinstance(d, str):
                return False
            folded = d.casefold()
            return any(w.casefold() in folded for w in wanted) or _any_near(wanted, d.split())

        return keyword
    return lambda r: _any_near(wanted, _strings(r.get(key)))


def _condition(c: RestCondition) -> Predicate:
    exact = RestQuery(and_=(c,)).matches
    fuzzy = _fuzzy(c)
    if fuzzy is None:
        return exact
    # Near strings on top of the exact matches: the API's answer is always a superset.
    return lambda r: exact(r) or fuzzy(r)


def approximate_predicate(query: RestQuery) -> Predicate:
    """`query` evaluated the way the public API evaluates it: string conditions approximately,
    in `and`, `or` and `not` alike."""
    return query.predicate(_condition)
