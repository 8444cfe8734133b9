"""Study query → what the public API is asked, and the exact query every returned video must pass.

The public API matches string conditions approximately (fuzzy string search), so whatever it
returns is only a candidate list: every video is re-checked locally against the study's own
query, whichever form it was written in, and what fails is dropped (and counted). Sending is
therefore only about cost: push down every positive condition the API can ask, as a superset;
keep a `not` on an approximate field local, since sent as is it could exclude true matches.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from harvester._exceptions import QueryError
from harvester.fields import APPROXIMATE_REST_FIELDS, REST_RECORD_FIELDS, REST_RETURNABLE
from harvester.query._rest import RestCondition, RestQuery
from harvester.query._seed import Condition, SeedQuery


@dataclass(frozen=True, slots=True)
class Translation:
    """A study query as the public API can ask it.

    `rest` is sent and selects a superset of the study's matches (within its dates);
    `post_filter` is the study's exact query, applied to every downloaded record, and needs
    `extra_fields` fetched even when the study did not ask for them.
    """

    rest: RestQuery
    post_filter: SeedQuery | RestQuery
    extra_fields: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def full_scan(self) -> bool:
        """Nothing positive is sent: the API would return every video of the study's dates."""
        return all(c.field_name == "create_date" for c in (*self.rest.and_, *self.rest.or_))


# Seed field -> REST field_name.
_REST_EQUIV: Mapping[str, str] = {
    "id": "video_id",
    "username": "username",
    "region_code": "region_code",
    "music_id": "music_id",
    "view_count": "view_count",
    "comment_count": "comment_count",
    "effect_ids": "effect_id",
    "hashtag_names": "hashtag_name",
    "video_description": "keyword",
}

_LIKE_LITERALS = re.compile(r"(?:\\.|[^%_\\])+")


def _rest_equivalent(c: Condition) -> tuple[RestCondition, bool] | None:
    """The REST condition selecting a superset of `c`'s matches, and whether it selects exactly
    the same records (so that its negation may be sent too)."""
    if c.field not in _REST_EQUIV:
        return None
    name = _REST_EQUIV[c.field]
    op = "IN" if c.operator == "CONTAINS" else c.operator
    values = c.values
    exact = name not in APPROXIMATE_REST_FIELDS and c.operator != "LIKE"
    if c.operator == "LIKE":
        runs = _LIKE_LITERALS.findall(values[0])
        if not runs:
            return None  # "%" alone: nothing to ask the API for
        literal = max(runs, key=len).replace("\\", "")
        op, values = "EQ", (literal,)
    if op == "EQ" and len(values) > 1:
        op = "IN"
    return RestCondition(op, name, values), exact


def _kept_local(c: Condition | RestCondition) -> str:
    what = f"{c.field_name} {c.operation} {list(c.values)!r}" if isinstance(c, RestCondition) else c
    return (
        f"not condition {what} is applied after download (the public Research API matches it "
        "only approximately, so sent as is it could exclude true matches); quota is spent on "
        "the records it drops"
    )


def translate_to_rest(seed: SeedQuery) -> Translation:
    """Translate the seed form for the public API; the whole seed query is the post-filter."""
    and_: list[RestCondition] = []
    or_: list[RestCondition] = []
    not_: list[RestCondition] = []
    warnings: list[str] = []
    local: list[Condition] = []
    for g in seed.groups:
        pushed = [_rest_equivalent(c) for c in g.conditions]
        if g.operator == "not":
            # NOT of a superset would drop true matches: only exact conditions go remote. Each
            # condition of a not group excludes on its own, so any subset of them may be sent.
            for c, eq in zip(g.conditions, pushed, strict=True):
                if eq is not None and eq[1]:
                    not_.append(eq[0])
                elif eq is not None:
                    warnings.append(_kept_local(c))
                else:
                    local.append(c)
            continue
        if g.operator == "and":
            for c, eq in zip(g.conditions, pushed, strict=True):
                if eq is None:
                    local.append(c)
                else:
                    and_.append(eq[0])
            continue
        # An "or" group can go remote only whole, and the API has a single "or" list.
        if not or_ and all(eq is not None for eq in pushed):
            or_.extend(eq[0] for eq in pushed if eq is not None)
        else:
            local.extend(c for c, eq in zip(g.conditions, pushed, strict=True) if eq is None)
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
    extra: list[str] = []
    for g in seed.groups:
        for c in g.conditions:
            if c.field not in ("id", "create_time") and c.field not in extra:
                extra.append(c.field)
    return Translation(
        rest=RestQuery(tuple(and_), tuple(or_), tuple(not_)),
        post_filter=seed,
        extra_fields=tuple(extra),
        warnings=tuple(warnings),
    )


def translate_rest(query: RestQuery) -> Translation:
    """The REST form as it is sent: whole, but for `not` conditions on approximate fields,
    which stay local; the whole query is the post-filter."""
    sent_not = tuple(c for c in query.not_ if c.field_name not in APPROXIMATE_REST_FIELDS)
    warnings = tuple(_kept_local(c) for c in query.not_ if c not in sent_not)
    extra: list[str] = []
    for c in (*query.and_, *query.or_, *query.not_):
        name = REST_RECORD_FIELDS[c.field_name]
        if name not in ("id", "create_time") and name not in extra:
            extra.append(name)
    return Translation(
        rest=RestQuery(query.and_, query.or_, sent_not),
        post_filter=query,
        extra_fields=tuple(extra),
        warnings=warnings,
    )
