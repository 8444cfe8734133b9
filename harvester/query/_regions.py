"""Region codes: the fixed list of TikTok's Research API reference, checked before any request.

The list is the one the query-videos reference gives for `region_code` (ISO 3166-1 alpha-2 with
a few legacy entries such as `TP` and `XK`). The codebook scopes the data to creators outside
Canada, so `CA` is in the list yet can never match; `UK` is the classic slip for `GB`. Neither
API says what it does with an unknown code (it matches approximately, so it may even return
something): a code that cannot be right is refused here, in one line, before quota is spent.
"""

from __future__ import annotations

from collections.abc import Iterator

from harvester._exceptions import QueryError
from harvester.query._rest import RestQuery
from harvester.query._seed import SeedQuery

__all__ = ["OUT_OF_SCOPE", "REGION_CODES", "check_region_codes"]

#: In the order of the reference page.
_LISTED = """
    FR TH MM BD IT NP IQ BR US KW VN AR KZ GB UA TR ID PK NG KH PH EG QA MY ES JO MA SA TW AF EC MX
    BW JP LT TN RO LY IL DZ CG GH DE BJ SN SK BY NL LA BE DO TZ LK NI LB IE RS HU PT GP CM HN FI GA
    BN SG BO GM BG SD TT OM FO MZ ML UG RE PY GT CI SR AO AZ LR CD HR SV MV GY BH TG SL MK KE MT MG
    MR PA IS LU HT TM ZM CR NO AL ET GW AU KR UY JM DK AE MD SE MU SO CO AT GR UZ CL GE PL CA CZ ZA
    AI VE KG PE CH LV PR NZ TL BT MN FJ SZ VU BF TJ BA AM TD SI CY MW EE XK ME KY YE LS ZW MC GN BS
    PF NA VI BB BZ CW PS FM PG BI AD TV GL KM AW TC CV MO VC NE WS MP DJ RW AG GI GQ AS AX TO KN LC
    NC LI SS IR SY IM SC VG SB DM KI UM SX GD MH BQ YT ST CF BM SM PW GU HK IN CK AQ WF JE MQ CN GF
    MS GG TK FK PM NU MF ER NF VA IO SH BL CU NR TP BV EH PN TF RU
"""
REGION_CODES: frozenset[str] = frozenset(_LISTED.split())

#: Codes in the list that the Research Tools' data never holds, and why.
OUT_OF_SCOPE = {"CA": "Canada is outside the Research API's scope (the codebook excludes it)"}

#: Common slips: a code that is not in the list, and the one meant.
_MEANT = {"UK": "GB", "EL": "GR"}


def _problem(value: str) -> str | None:
    """What is wrong with `value` as a region code (with the fix), or None."""
    if value in OUT_OF_SCOPE:
        return f"region code {value!r}: {OUT_OF_SCOPE[value]}; remove it"
    if value in REGION_CODES:
        return None
    upper = value.strip().upper()
    meant = _MEANT.get(upper, upper if upper in REGION_CODES else None)
    if meant is not None and meant not in OUT_OF_SCOPE:
        return f"region code {value!r} is not in TikTok's codebook; did you mean {meant!r}?"
    return (
        f"region code {value!r} is not in TikTok's codebook; "
        'use a two-letter code of its list, like "NL", "GB" or "US"'
    )


def _conditions(query: SeedQuery | RestQuery) -> Iterator[tuple[str, str, tuple[str, ...]]]:
    """(where, field, values) of every condition, located as the parsers locate problems."""
    if isinstance(query, SeedQuery):
        for gi, g in enumerate(query.groups):
            for ci, c in enumerate(g.conditions):
                yield f"condition_groups[{gi}].conditions[{ci}]", c.field, c.values
        return
    for key, conds in (("and", query.and_), ("or", query.or_), ("not", query.not_)):
        for i, rc in enumerate(conds):
            yield f"query.{key}[{i}]", rc.field_name, rc.values


def check_region_codes(query: SeedQuery | RestQuery) -> None:
    """QueryError (one line, with the fix) for the first region code that cannot be right."""
    for where, name, values in _conditions(query):
        if name != "region_code":
            continue
        for value in values:
            problem = _problem(value)
            if problem is not None:
                raise QueryError(f"{where}: {problem}")
