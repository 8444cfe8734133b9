from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from harvester import SinkError
from harvester.sink import cleanup_staging, read_ids, read_segments, remove_leaves, write_segment

from ._data import DAY, FULL, JAN1, stage_pages, video

LEAF = "20230101T000000-20230101T120000"
WINDOW = (JAN1, JAN1 + DAY // 2)


def test_pages_round_trip_and_rebuild_the_seen_set(tmp_path: Path) -> None:
    pages = [[video(i, JAN1 + i) for i in range(p * 10, p * 10 + 10)] for p in range(3)]
    pages.append(pages[0])  # a repeated page stages nothing
    paths = stage_pages(tmp_path, FULL, LEAF, WINDOW, pages)
    assert paths == [f"{LEAF}/000000.arrow", f"{LEAF}/000001.arrow", f"{LEAF}/000002.arrow"]
    batches = list(read_segments(tmp_path, paths))
    assert sum(b.num_rows for b in batches) == 30 and batches[0].schema == FULL.schema
    assert read_ids(tmp_path, paths) == {video(i, 0)["id"] for i in range(30)}
    assert not list(tmp_path.rglob(".*"))  # no temporary file left behind


def test_unknown_segments_and_temp_files_are_cleaned(tmp_path: Path) -> None:
    known = stage_pages(tmp_path, FULL, LEAF, WINDOW, [[video(1, JAN1)], [video(2, JAN1)]])
    (tmp_path / LEAF / ".000002.arrow.tmp").write_bytes(b"partial")
    (tmp_path / "20230102-20230102").mkdir()
    (tmp_path / "20230102-20230102" / "000000.arrow").write_bytes(b"orphan")
    removed = cleanup_staging(tmp_path, set(known[:1]))
    assert removed == sorted(
        [f"{LEAF}/.000002.arrow.tmp", known[1], "20230102-20230102/000000.arrow"]
    )
    assert not (tmp_path / "20230102-20230102").exists()
    remove_leaves(tmp_path, [LEAF, "20230105-20230105"])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("key", ["../x", "a/b", "", ".hidden", "x" * 200])
def test_leaf_keys_must_be_keys(tmp_path: Path, key: str) -> None:
    batch = pa.RecordBatch.from_pylist([], schema=FULL.schema)
    with pytest.raises(SinkError):
        write_segment(tmp_path, key, 0, batch)
    assert list(tmp_path.iterdir()) == []
