"""The field catalogue: one table of every video field, its type, and how each API uses it.

Query validation, translation to the public API, the simulator's corpus and the Parquet schema all
read this table, so a field is described once. Types are a tiny structural language (scalars,
lists, structs) rather than Arrow types so that this module stays free of pyarrow; the sink maps
them to Arrow.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "APPROXIMATE_REST_FIELDS",
    "CATALOGUE",
    "COMPARISONS",
    "DEFAULT_FIELDS",
    "DERIVED_PARTITIONS",
    "REQUIRED_FIELDS",
    "REST_CONDITION_FIELDS",
    "REST_OPERATIONS",
    "REST_RECORD_FIELDS",
    "REST_RETURNABLE",
    "RQS_RETURNABLE",
    "Field",
    "ListOf",
    "Scalar",
    "StructOf",
    "Type",
    "as_int",
    "field",
    "partition_problem",
]

ScalarName = Literal["int64", "string", "bool"]


@dataclass(frozen=True, slots=True)
class Scalar:
    name: ScalarName


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Type


@dataclass(frozen=True, slots=True)
class StructOf:
    fields: tuple[tuple[str, Type], ...]


Type = Scalar | ListOf | StructOf

INT64 = Scalar("int64")
STRING = Scalar("string")
BOOL = Scalar("bool")
STRINGS = ListOf(STRING)

#: Operators of the seed document's table, upper-cased (the API takes any case).
COMPARISONS = frozenset({"EQ", "IN", "GT", "GTE", "LT", "LTE"})
EQ_IN = frozenset({"EQ", "IN"})


@dataclass(frozen=True, slots=True)
class Field:
    """One video field.

    `operators` are those the Research Query Service allows in a condition on this field
    (empty: not a condition field). `rest_condition` names the public API's condition field
    that can express a condition on it, if any. `rest` / `rqs` say whether each API can return it.
    """

    name: str
    type: Type
    operators: frozenset[str] = frozenset()
    rest_condition: str | None = None
    rest: bool = True
    rqs: bool = True
    description: str = ""

    @property
    def is_list(self) -> bool:
        return isinstance(self.type, ListOf)


_FIELDS = (
    Field("id", INT64, EQ_IN, "video_id", description="19-digit video id (item_id)"),
    Field("create_time", INT64, COMPARISONS, "create_date", description="UTC epoch seconds"),
    Field("username", STRING, EQ_IN, "username"),
    Field("region_code", STRING, EQ_IN, "region_code", description="two-letter country code"),
    Field("video_description", STRING, EQ_IN | {"LIKE"}, "keyword"),
    Field("music_id", INT64, EQ_IN, "music_id"),
    Field("like_count", INT64, COMPARISONS),
    Field("comment_count", INT64, COMPARISONS, "comment_count"),
    Field("share_count", INT64, COMPARISONS),
    Field("view_count", INT64, COMPARISONS, "view_count"),
    Field("effect_ids", STRINGS, frozenset({"CONTAINS"}), "effect_id"),
    Field("hashtag_names", STRINGS, frozenset({"CONTAINS"}), "hashtag_name"),
    Field("playlist_id", INT64, EQ_IN),
    Field("voice_to_text", STRING, EQ_IN),
    # The seed lists `duration_type` as an int condition field the public API cannot return.
    Field("duration_type", INT64, COMPARISONS, rest=False),
    # One reference page spells it `favourites_count`: read as this field (harvester._names).
    Field("favorites_count", INT64),
    # The same flag is `is_stem_verified` in the public API and `stem_verified` in the seed.
    Field("is_stem_verified", BOOL),
    Field("stem_verified", BOOL, rest=False),
    Field("video_duration", INT64, description="seconds"),
    Field(
        "hashtag_info_list",
        ListOf(
            StructOf(
                (
                    ("hashtag_id", INT64),
                    ("hashtag_name", STRING),
                    ("hashtag_description", STRING),
                )
            )
        ),
    ),
    Field(
        "sticker_info_list", ListOf(StructOf((("sticker_id", STRING), ("sticker_name", STRING))))
    ),
    Field(
        "effect_info_list",
        ListOf(
            StructOf((("effect_id", STRING), ("effect_name", STRING), ("effect_photo_url", STRING)))
        ),
    ),
    Field("video_mention_list", STRINGS),
    Field("video_label", StructOf((("content", STRING),))),
    # A struct of type and number in the codebook, a list of them on one reference page: a list,
    # and a lone struct is read as a list of one (see harvester.sink.records).
    Field("video_tag", ListOf(StructOf((("number", INT64), ("type", STRING))))),
    # Named only in the seed's second sample program; its type is not documented.
    Field("video_sticker_id", STRING, rest=False),
)

CATALOGUE: Mapping[str, Field] = {f.name: f for f in _FIELDS}

REST_RETURNABLE = frozenset(f.name for f in _FIELDS if f.rest)
RQS_RETURNABLE = frozenset(f.name for f in _FIELDS if f.rqs)

#: Returned when a study names no fields: everything both APIs can return.
DEFAULT_FIELDS: tuple[str, ...] = tuple(f.name for f in _FIELDS if f.rest and f.rqs)

#: The public API's own condition fields (its `field_name`s) and their value kinds.
REST_CONDITION_FIELDS: Mapping[str, Literal["int64", "string", "date", "length"]] = {
    "create_date": "date",
    "username": "string",
    "region_code": "string",
    "video_id": "int64",
    "hashtag_name": "string",
    "keyword": "string",
    "music_id": "int64",
    "effect_id": "string",
    "video_length": "length",
    "view_count": "int64",
    "comment_count": "int64",
}
REST_OPERATIONS = COMPARISONS

#: The public API's string conditions, which it matches approximately (fuzzy string search, as
#: its query guide says, for no field in particular): what it returns for one is a superset of
#: the true matches, and a `not` on one can exclude true matches.
APPROXIMATE_REST_FIELDS = frozenset(
    {"username", "region_code", "keyword", "hashtag_name", "music_id", "effect_id"}
)

#: The video field each public-API condition reads: what an exact re-check of the records needs.
REST_RECORD_FIELDS: Mapping[str, str] = {
    "create_date": "create_time",
    "username": "username",
    "region_code": "region_code",
    "video_id": "id",
    "hashtag_name": "hashtag_names",
    "keyword": "video_description",
    "music_id": "music_id",
    "effect_id": "effect_ids",
    "video_length": "video_duration",
    "view_count": "view_count",
    "comment_count": "comment_count",
}

#: `video_length` buckets of the public API, in seconds (lower inclusive, upper exclusive).
VIDEO_LENGTHS: Mapping[str, tuple[int, int]] = {
    "SHORT": (0, 15),
    "MID": (15, 60),
    "LONG": (60, 300),
    "EXTRA_LONG": (300, 1 << 62),
}


def field(name: str) -> Field:
    """The catalogue entry for `name`; KeyError if there is none."""
    return CATALOGUE[name]


#: Fields a row cannot exist without: identity (dedupe) and the window it belongs to. Always
#: fetched and stored, whatever the study lists.
REQUIRED_FIELDS = ("id", "create_time")
#: Partition columns computed from `create_time` (UTC) rather than read from a field.
DERIVED_PARTITIONS = ("create_date", "create_month", "create_year")


def partition_problem(name: str, fields: Sequence[str]) -> tuple[str, str] | None:
    """(problem, fix) when `name` cannot partition a dataset of `fields`, else None: a derived
    partition, or a string field the study fetches."""
    if name in DERIVED_PARTITIONS:
        return None
    known = CATALOGUE.get(name)
    if known is not None and known.type == Scalar("string"):
        if name in fields or name in REQUIRED_FIELDS:
            return None
        return f"{name} is not in study.fields", "add it there or remove it here"
    usable = [f for f in fields if f in CATALOGUE and CATALOGUE[f].type == Scalar("string")]
    return (
        f'"{name}" cannot partition the dataset',
        f"use one of {', '.join((*DERIVED_PARTITIONS, *usable))}",
    )


def as_int(value: object) -> int | None:
    """An integer as the APIs send one (ids, epochs, counts, cursors): an int or a string of
    digits; never a bool, and None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.removeprefix("-").isdigit():
            return int(text)
    return None
