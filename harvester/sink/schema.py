"""The dataset's Arrow schema, derived from the field catalogue.

Every file of a study shares one explicit schema, so readers never have to unify types that
inference guessed differently from one page to the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

from harvester._arrow import arrow_type
from harvester._exceptions import ConfigError
from harvester.fields import CATALOGUE, DERIVED_PARTITIONS, REQUIRED_FIELDS, partition_problem

__all__ = [
    "DERIVED_PARTITIONS",
    "PROVENANCE",
    "SOURCES",
    "Layout",
    "arrow_type",
    "layout",
]

#: Provenance columns appended to every row, after the catalogue fields.
PROVENANCE = ("_retrieved_at", "_shard", "_source", "_extra")
SOURCES = frozenset({"research-api", "rqs", "pyrqs"})


@dataclass(frozen=True, slots=True)
class Layout:
    """What a study's rows look like and where they land.

    `schema` is the staging schema (fields, provenance, partition columns); `file_schema` is what
    a Parquet file holds: the partition columns live only in the hive path (`create_date=…/`),
    which every reader turns back into columns.
    """

    fields: tuple[str, ...]
    partition_by: tuple[str, ...]
    schema: pa.Schema
    file_schema: pa.Schema

    @property
    def derived(self) -> tuple[str, ...]:
        """Partition columns that are not catalogue fields."""
        return tuple(p for p in self.partition_by if p in DERIVED_PARTITIONS)


def layout(fields: Sequence[str], partition_by: Sequence[str] = ("create_date",)) -> Layout:
    """The layout for a study's chosen fields, in catalogue order (stable whatever the study's).

    `id` and `create_time` are always included: dedupe and windows need them.
    """
    unknown = [f for f in fields if f not in CATALOGUE]
    if unknown:
        raise ConfigError(f"unknown field(s): {', '.join(sorted(unknown))}")
    chosen = set(fields) | set(REQUIRED_FIELDS)
    names = tuple(n for n in CATALOGUE if n in chosen)
    parts = tuple(dict.fromkeys(partition_by))
    for p in parts:
        if (problem := partition_problem(p, names)) is not None:
            raise ConfigError(f"output.partition_by: {problem[0]}; {problem[1]}")
    nullable = {n: n not in REQUIRED_FIELDS for n in names}
    cols = [pa.field(n, arrow_type(CATALOGUE[n].type), nullable=nullable[n]) for n in names]
    cols += [
        pa.field("_retrieved_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("_shard", pa.string(), nullable=False),
        pa.field("_source", pa.string(), nullable=False),
        pa.field("_extra", pa.string()),
    ]
    file_schema = pa.schema([c for c in cols if c.name not in parts])
    cols += [pa.field(p, pa.string()) for p in parts if p in DERIVED_PARTITIONS]
    return Layout(names, parts, pa.schema(cols), file_schema)
