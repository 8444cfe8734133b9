"""Seed form → public API: push down what the API can ask, post-filter the rest locally."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from harvester._exceptions import QueryError
from harvester.fields import REST_RETURNABLE
from harvester.query._rest import RestCondition, RestQuery
from harvester.query._seed import Condition, ConditionGroup, SeedQuery


@dataclass(frozen=True, slots=True)
class Translation:
    """A seed query as the public API can ask it.

    `rest` selects a superset of the seed query's matches (within the study's dates);
    `post_filter` is applied to downloaded records to get exactly the seed's matches, and needs
    `extra_fields` fetched even when the study did not ask for them.
    """

    rest: RestQuery
    post_filter: SeedQuery
    extra_fields: tuple[str, ...]
    warnings: tuple[str, ...]


# Seed field -> REST field_name, and whether the REST condition selects exactly the same records
# (hashtag_name and keyword match fuzzily: the API returns false positives).
_REST_EQUIV: Mapping[str, tuple[str, bool]] = {
    "id": ("video_id", True),
    "username": ("username", True),
    "region_code": ("region_code", True),
    "music_id": ("music_id", True),
    "view_count": ("view_count", True),
    "comment_count": ("comment_count", True),
    "effect_ids": ("effect_id", True),
    "hashtag_names": ("hashtag_name", False),
    "video_description": ("keyword", False),
}

_LIKE_LITERALS = re.compile(r"(?:\\.|[^%_\\])+")


def _rest_equivalent(c: Condition) -> tuple[RestCondition, bool] | None:
    """The REST condition selecting a superset of `c`'s matches, and whether it is exact."""
    if c.field not in _REST_EQUIV:
        return None
    name, exact = _REST_EQUIV[c.field]
    op = "IN" if c.operator == "CONTAINS" else c.operator
    values = c.values
    if c.operator == "LIKE":
        runs = _LIKE_LITERALS.findall(values[0])
        if not runs:
            return None  # "%" alone: nothing to ask the API for
        literal = max(runs, key=len).replace("\\", "")
        op, values = "EQ", (literal,)
    if op == "EQ" and len(values) > 1:
        op = "IN"
    return RestCondition(op, name, values), exact


def translate_to_rest(seed: SeedQuery) -> Translation:
    """Translate for the public API; conditions it cannot express become a local post-filter."""
    and_: list[RestCondition] = []
    or_: list[RestCondition] = []
    not_: list[RestCondition] = []
    post: list[ConditionGroup] = []
    warnings: list[str] = []
    local: list[Condition] = []
    for g in seed.groups:
        pushed = [_rest_equivalent(c) for c in g.conditions]
        if g.operator == "not":
            kept = []
            for c, eq in zip(g.conditions, pushed, strict=True):
                # NOT of a superset would drop true matches: only exact conditions go remote.
                if eq is not None and eq[1]:
                    not_.append(eq[0])
                else:
                    kept.append(c)
            if kept:
                post.append(ConditionGroup("not", tuple(kept)))
                local.extend(kept)
            continue
        if g.operator == "and":
            inexact = False
            for c, eq in zip(g.conditions, pushed, strict=True):
                if eq is None:
                    inexact = True
                    local.append(c)
                else:
                    and_.append(eq[0])
                    inexact = inexact or not eq[1]
            if inexact:
                post.append(g)
            continue
        # An "or" group can go remote only whole, and the API has a single "or" list.
        if not or_ and all(eq is not None for eq in pushed):
            or_.extend(eq[0] for eq in pushed if eq is not None)
            if not all(eq is not None and eq[1] for eq in pushed):
                post.append(g)
        else:
            post.append(g)
            local.extend(c for c, eq in zip(g.conditions, pushed, strict=True) if eq is None)
    extra: list[str] = []
    for c in local:
        if c.field == "create_time":
            continue  # the study's windows carry the dates; the post-filter keeps it exact
        if c.field not in REST_RETURNABLE:
            raise QueryError(
                f"condition {c} has no equivalent in the public Research API and "
                f"the API cannot return {c.field} to filter locally; "
                'use source = "rqs" for this study'
            )
        warnings.append(
            f"condition {c} is applied after download (the public Research API cannot ask it "
            "exactly); quota is spent on the records it drops"
        )
        if c.field not in extra:
            extra.append(c.field)
    for g in post:
        for c in g.conditions:
            if c.field not in extra:
                extra.append(c.field)
    return Translation(
        rest=RestQuery(tuple(and_), tuple(or_), tuple(not_)),
        post_filter=SeedQuery(tuple(post)),
        extra_fields=tuple(extra),
        warnings=tuple(warnings),
    )
