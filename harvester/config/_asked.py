"""What the study asks for: the fields, the query (in either form) and the RQS task limit."""

from __future__ import annotations

import re

from harvester._exceptions import QueryError
from harvester.config._schema import Problem, StudyTable
from harvester.fields import DEFAULT_FIELDS, REQUIRED_FIELDS
from harvester.query import (
    STAGE_LIMITS,
    RestQuery,
    SeedQuery,
    Translation,
    check_region_codes,
    parse_rest_query,
    parse_seed_query,
    translate_rest,
    translate_to_rest,
    validate_fields,
    validate_limit,
)

_QUERY_PATH_RE = re.compile(r"(condition_groups|query)((?:\[\d+\]|\.\w+)*)(?::\s+|\s+)")

Queries = tuple[SeedQuery | None, RestQuery | None, Translation | None, tuple[str, ...]]


def fields(s: StudyTable) -> tuple[str, ...]:
    """The fields to fetch, the required ones first when the study leaves them out."""
    try:
        given = validate_fields(DEFAULT_FIELDS if s.fields is None else s.fields, s.source)
    except QueryError as e:
        raise _query_problem("study.fields", e) from None
    return tuple(f for f in REQUIRED_FIELDS if f not in given) + given


def limit(s: StudyTable) -> int | None:
    """The per-task record limit of an RQS study (None for the public API)."""
    if s.source == "research-api":
        if s.limit is not None:
            raise Problem(
                "study.limit", "applies only to RQS tasks", "remove it for source research-api"
            )
        return None
    # Test stage: unset means "no cap of the study's own": the day's record budget, spread
    # over the windows, sets each task's limit (plan/sample.py).
    given = STAGE_LIMITS["test"][1] if s.stage == "test" and s.limit is None else s.limit
    try:
        return validate_limit(given, s.stage)
    except QueryError as e:
        raise _query_problem("study.limit", e) from None


def queries(s: StudyTable) -> Queries:
    """(seed form, REST form, translation, warnings): exactly one form is given; the public
    API is sent the REST form, translated from the seed form when that is what was written."""
    if (s.condition_groups is None) == (s.query is None):
        both = s.condition_groups is not None
        raise Problem(
            "study.query" if both else "study.condition_groups",
            "both query forms are given" if both else "no query is given",
            "give exactly one of condition_groups (any source) or query (research-api only)",
        )
    if s.query is not None:
        return _rest_form(s)
    try:
        seed = parse_seed_query(s.condition_groups)
        check_region_codes(seed)
        if s.source != "research-api":
            return seed, None, None, ()
        translation = translate_to_rest(seed)
    except QueryError as e:
        raise _query_problem("study.condition_groups", e) from None
    return seed, translation.rest, translation, translation.warnings


def _rest_form(s: StudyTable) -> Queries:
    if s.source != "research-api":
        raise Problem(
            "study.query",
            f"the REST query form does not work with source {s.source!r}",
            "write it as condition_groups instead",
        )
    try:
        rest = parse_rest_query(s.query)
        check_region_codes(rest)
    except QueryError as e:
        raise _query_problem("study.query", e) from None
    translation = translate_rest(rest)
    return None, rest, translation, translation.warnings


def _query_problem(key: str, error: QueryError) -> Problem:
    """Fold the query's own location (`condition_groups[0].conditions[1]`) into the key."""
    text = str(error)
    if (m := _QUERY_PATH_RE.match(text)) and key.endswith("." + m[1]):
        key, text = key + m[2], text[m.end() :]
    problem, sep, fix = text.partition("; ")
    return Problem(key, problem, fix if sep else "fix the query")
