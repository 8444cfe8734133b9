"""Fact 13: result pages name fields differently (`video_id`, `create_date`, `country_code`,
`video_length`, ...) and may give the result as JSON text. Every decoder stores them under the
catalogue's names; a row without an id is kept apart, never silently dropped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pytest

from harvester import ConfigError
from harvester._names import canonical_names
from harvester.api import PollPolicy, RqsClient
from harvester.api._pages import PageDecoder
from harvester.sink import layout, normalise_page, normalise_rows
from tests.api.conftest import SessionFactory
from tests.api.fakeapi import FakeApi, ok, raw

T0 = 1_672_531_200  # 2023-01-01T00:00:00Z
VID = 7_186_000_000_000_000_001
FIELDS = ("id", "create_time", "username", "region_code", "video_duration", "video_tag")
LAYOUT = layout(FIELDS, ("create_date",))
NOW = datetime(2023, 2, 1, tzinfo=UTC)
POLL = PollPolicy(initial=0.001, maximum=0.01, timeout=5.0)
CREATE = "/v2/research/query_task/create/"
STATUS = "/v2/research/query_task/status/"
RESULT = "/v2/research/query_task/result/"
GROUPS = [
    {
        "operator": "and",
        "conditions": [{"field": "region_code", "operator": "eq", "field_values": ["NL"]}],
    }
]


def vce_style(i: int) -> dict[str, Any]:
    """A record the way the newer VCE page names its fields."""
    return {
        "video_id": VID + i,
        "create_date": T0 + 3600 + i,
        "username": f"user{i}",
        "country_code": "NL",
        "video_length": 31,
        "video_tags": [{"number": 1, "type": "Poll"}],
    }


CATALOGUE_STYLE = {
    "id": VID,
    "create_time": T0 + 3600,
    "username": "user0",
    "region_code": "NL",
    "video_duration": 31,
    "video_tag": [{"number": 1, "type": "Poll"}],
}


@pytest.mark.parametrize(
    ("value", "epoch"),
    [
        (T0 + 5, T0 + 5),  # an epoch stays an epoch
        (str(T0 + 5), T0 + 5),
        (20230101, T0),  # a date is 00:00 UTC of that day, not August 1970
        ("20230101", T0),
        ("2023-01-01", T0),
        ("2023-01-01T00:00:07Z", T0 + 7),
        ("2023-01-01 00:00:07", T0 + 7),
        ("yesterday", "yesterday"),  # left as is: the sink quarantines the record
    ],
)
def test_create_date_becomes_create_time(value: Any, epoch: Any) -> None:
    assert canonical_names({"video_id": 1, "create_date": value}) == {
        "id": 1,
        "create_time": epoch,
    }


def test_both_names_with_different_values_keep_the_alias_for_extra() -> None:
    both = canonical_names({"id": 1, "video_id": 2, "region_code": "NL", "country_code": "NL"})
    assert both == {"id": 1, "video_id": 2, "region_code": "NL"}
    plain = {"id": 1}
    assert canonical_names(plain) is plain  # the usual record is not copied


def test_the_dict_path_stores_catalogue_names_and_quarantines_id_less_rows() -> None:
    records: list[object] = [vce_style(0), {"create_date": T0 + 9, "username": "no id"}]
    result = normalise_page(
        records,
        LAYOUT,
        leaf_key="20230101-20230101",
        window=(T0, T0 + 86_400),
        source="pyrqs",
        retrieved_at=NOW,
    )
    row = result.batch.to_pylist()[0]
    assert {k: row[k] for k in FIELDS} == CATALOGUE_STYLE
    assert row["_extra"] is None  # nothing unknown: every alias was renamed
    assert result.invalid == 1
    assert result.rejected == ({"create_time": T0 + 9, "username": "no id"},)


def test_the_arrow_path_falls_back_on_aliases_and_keeps_id_less_rows_apart() -> None:
    decoder = PageDecoder("result", FIELDS, {"cursor": pa.int64()})
    aliased = {"data": {"result": [vce_style(0)], "cursor": 1}, "error": {"code": "ok"}}
    assert decoder(orjson.dumps(aliased)) is None  # the general path renames them
    as_text = {"data": {"result": orjson.dumps([CATALOGUE_STYLE]).decode(), "cursor": 1}}
    assert decoder(orjson.dumps(as_text)) is None  # a result given as JSON text, too
    body = {"data": {"result": [CATALOGUE_STYLE, {**CATALOGUE_STYLE, "id": None}], "cursor": 2}}
    decoded = decoder(orjson.dumps(body))
    assert decoded is not None
    result = normalise_rows(
        decoded["result"],
        LAYOUT,
        leaf_key="20230101-20230101",
        window=(T0, T0 + 86_400),
        source="rqs",
        retrieved_at=NOW,
    )
    assert result.row_count == 1 and result.invalid == 1
    assert result.rejected == ({**CATALOGUE_STYLE, "id": None},)


@pytest.mark.anyio
@pytest.mark.parametrize("as_text", [False, True], ids=["list", "json-text"])
async def test_rqs_pages_over_http_use_catalogue_names(
    fake: FakeApi, make_session: SessionFactory, as_text: bool
) -> None:
    records = [vce_style(i) for i in range(3)]
    result: Any = orjson.dumps(records).decode() if as_text else records
    fake.script(CREATE, ok({"task_id": 41}))
    fake.defaults[STATUS] = ok({"status": "Completed"})
    fake.script(RESULT, ok({"result": result, "cursor": 3, "has_more": False, "total": 3}))
    client = RqsClient(make_session(), poll=POLL, arrow=True)
    pages = [p async for p in client.task_pages(GROUPS, list(FIELDS))]
    got = [r for p in pages for r in p.as_records()]
    assert [r["id"] for r in got] == [VID, VID + 1, VID + 2]
    assert got[0] == CATALOGUE_STYLE


@pytest.mark.anyio
async def test_a_404_on_create_says_the_binding_is_ours(
    fake: FakeApi, make_session: SessionFactory
) -> None:
    """Fact 10: pointed at a host without the binding (TikTok has none), say where it lives."""
    fake.script(CREATE, raw(404, b"<html>Not Found</html>"))
    client = RqsClient(make_session(), poll=POLL)
    with pytest.raises(ConfigError) as info:
        await client.create(GROUPS, "id,create_time", 10)
    message = str(info.value)
    assert "harvester simulate" in message and 'source = "pyrqs"' in message
    assert "api.base_url" in message and "\n" not in message
