from __future__ import annotations

import os
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from harvester.sink import HIVE_NULL, encode_value, partition_path
from harvester.sink.partition import MAX_SEGMENT, is_lossless

HOSTILE = ["../../etc", "a/b", "\x00", "x" * 10_000, ".", "..", ".hidden", "a\\b", "=", "%2F"]


def _inside(root: Path, rel: str) -> bool:
    target = Path(os.path.normpath(root / rel))
    return target.is_relative_to(root) and target != root


def test_hostile_values_stay_one_plain_segment(tmp_path: Path) -> None:
    for v in HOSTILE:
        seg = encode_value(v)
        assert "/" not in seg and "\\" not in seg and "\x00" not in seg
        assert not seg.startswith(".") and seg not in (".", "..")
        assert len(seg) <= MAX_SEGMENT
        assert _inside(tmp_path, partition_path((("region_code", v),)))


def test_null_and_empty_use_the_hive_default() -> None:
    assert encode_value(None) == encode_value("") == HIVE_NULL
    assert encode_value(HIVE_NULL) != HIVE_NULL
    assert not is_lossless("") and not is_lossless(None)


def test_long_values_are_cut_distinctly() -> None:
    a, b = "y" * 500 + "a", "y" * 500 + "b"
    assert encode_value(a) != encode_value(b)
    assert not is_lossless(a)
    assert is_lossless("US") and encode_value("US") == "US"
    assert encode_value("2023-01-05") == "2023-01-05"


@given(st.text())
def test_no_value_escapes_the_root(value: str) -> None:
    root = Path("/data/root")
    rel = partition_path((("k", value), ("j", value)))
    assert _inside(root, rel)
    assert all(len(part) <= MAX_SEGMENT + 2 for part in rel.split("/"))
    assert all(c.isalnum() or c in "=_-~%/" for c in rel)
