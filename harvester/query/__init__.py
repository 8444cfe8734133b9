"""Queries in both of TikTok's forms: parse and validate, evaluate, translate.

The seed form is the Research Query Service's `condition_groups`; the REST form is the public
Research API's `{"and", "or", "not"}`. Validation happens here, before any request, and every
problem is one `QueryError` line naming the field and the fix. `matches` is the single evaluator:
the simulator answers queries with it and the harvester post-filters with it, so both agree on
what a condition means (docs/design.md lists the semantics chosen where the specs are silent).
"""

from __future__ import annotations

from harvester.query._common import (
    MAX_REST_WINDOW_DAYS,
    STAGE_LIMITS,
    Source,
    Stage,
    clean_string,
    validate_fields,
    validate_limit,
)
from harvester.query._regions import OUT_OF_SCOPE, REGION_CODES, check_region_codes
from harvester.query._rest import RestCondition, RestQuery, parse_rest_query
from harvester.query._seed import Condition, ConditionGroup, SeedQuery, parse_seed_query
from harvester.query._split import ValueSplit, value_split
from harvester.query._translate import Translation, translate_rest, translate_to_rest

__all__ = [
    "MAX_REST_WINDOW_DAYS",
    "OUT_OF_SCOPE",
    "REGION_CODES",
    "STAGE_LIMITS",
    "Condition",
    "ConditionGroup",
    "RestCondition",
    "RestQuery",
    "SeedQuery",
    "Source",
    "Stage",
    "Translation",
    "ValueSplit",
    "check_region_codes",
    "clean_string",
    "parse_rest_query",
    "parse_seed_query",
    "translate_rest",
    "translate_to_rest",
    "validate_fields",
    "validate_limit",
    "value_split",
]
