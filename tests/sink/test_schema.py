from __future__ import annotations

import pyarrow as pa
import pytest

from harvester import ConfigError
from harvester.fields import CATALOGUE, DEFAULT_FIELDS
from harvester.sink import PROVENANCE, layout


def test_types_follow_the_catalogue() -> None:
    lay = layout(DEFAULT_FIELDS)
    s = lay.schema
    assert s.field("id").type == pa.int64() and not s.field("id").nullable
    assert s.field("create_time").type == pa.int64()
    assert s.field("hashtag_names").type == pa.list_(pa.string())
    assert s.field("is_stem_verified").type == pa.bool_()
    assert s.field("video_label").type == pa.struct([("content", pa.string())])
    assert s.field("video_tag").type == pa.list_(
        pa.struct([("number", pa.int64()), ("type", pa.string())])
    )
    assert s.field("_retrieved_at").type == pa.timestamp("us", tz="UTC")
    assert s.names[-5:] == [*PROVENANCE, "create_date"]


def test_order_is_the_catalogues_whatever_the_study_says() -> None:
    a = layout(["view_count", "username"])
    b = layout(["username", "view_count", "id"])
    assert a.schema == b.schema
    assert a.fields == tuple(n for n in CATALOGUE if n in a.fields)
    assert a.fields[:2] == ("id", "create_time")  # always there


def test_partition_columns_live_in_the_path_only() -> None:
    lay = layout(["region_code"], ("create_month", "region_code"))
    assert "create_month" in lay.schema.names and "region_code" in lay.schema.names
    assert "create_month" not in lay.file_schema.names
    assert "region_code" not in lay.file_schema.names
    assert lay.derived == ("create_month",)


@pytest.mark.parametrize(
    ("fields", "parts"),
    [(["nope"], ("create_date",)), (["view_count"], ("view_count",)), ([], ("region_code",))],
)
def test_bad_choices_are_config_errors(fields: list[str], parts: tuple[str, ...]) -> None:
    with pytest.raises(ConfigError):
        layout(fields, parts)
