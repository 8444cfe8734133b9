"""The other names TikTok's pages give the catalogue's result fields, and the way back.

The seed's query fields say `region_code` and `create_time`, its result list `country_code` and
`create_date`; a newer VCE page names `video_id`, `video_length` and `video_tags`; the codebook
calls the id `item_id` too, and one API reference page spells `favorites_count` the British way.
Whatever a result page calls a field, it is stored under the catalogue's name, so one study has
one schema whichever page the service follows.

A value is only renamed, never guessed at, except a creation *date* standing in for
`create_time`: a date (`20230115`, `"2023-01-15"`) becomes 00:00 UTC of that day, an epoch stays
as it is. When a record carries both names with different values, the alias is left in place
(it then lands in `_extra`, as any key the catalogue does not know).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any

__all__ = ["RESULT_ALIASES", "canonical_names", "has_aliases"]

#: alias -> the catalogue's name.
RESULT_ALIASES: Mapping[str, str] = {
    "video_id": "id",
    "item_id": "id",
    "create_date": "create_time",
    "country_code": "region_code",
    "video_length": "video_duration",
    "video_tags": "video_tag",
    "favourites_count": "favorites_count",
}
_ALIASES = frozenset(RESULT_ALIASES)
_YYYYMMDD = re.compile(r"(19|20)\d{2}(0[1-9]|1[0-2])(0[1-9]|[12]\d|3[01])")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def has_aliases(record: Mapping[str, Any]) -> bool:
    """Cheap test for the usual page, whose records use the catalogue's names only."""
    return not _ALIASES.isdisjoint(record.keys())


def _midnight(d: date) -> int:
    return int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp())


def _create_time(value: Any) -> Any:
    """An epoch from a creation date or time in any of the shapes seen; else `value` itself
    (the sink then counts it as unusable and quarantines the record)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return value
    text = str(value).strip()
    try:
        if _YYYYMMDD.fullmatch(text):  # 20230115: a date, not an epoch in August 1970
            return _midnight(date(int(text[:4]), int(text[4:6]), int(text[6:])))
        if text.isdigit():
            return int(text)
        if _ISO_DATE.fullmatch(text):
            return _midnight(date.fromisoformat(text))
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def canonical_names(record: dict[str, Any]) -> dict[str, Any]:
    """`record` with every alias renamed to the catalogue's name (the same dict when it has
    none, else a new one)."""
    if not has_aliases(record):
        return record
    out = dict(record)
    for alias, name in RESULT_ALIASES.items():
        if alias not in out:
            continue
        value = out[alias]
        if name == "create_time":
            value = _create_time(value)
        if name not in out or out[name] is None:
            del out[alias]
            out[name] = value
        elif out[name] == value:
            del out[alias]
    return out
