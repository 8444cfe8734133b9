"""The history dataset: superseded rows copied once, beside the dataset, by retrieval day."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from harvester.sink.history import keep_history

MONDAY = datetime(2024, 3, 4, 23, 59, tzinfo=UTC)
TUESDAY = datetime(2024, 3, 5, 0, 1, tzinfo=UTC)


def write(root: Path, rel: str, ids: list[int], at: list[datetime]) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "view_count": pa.array([i * 10 for i in ids], pa.int64()),
            "_retrieved_at": pa.array(at, pa.timestamp("us", tz="UTC")),
        }
    )
    pq.write_table(table, path)


def test_superseded_rows_are_copied_once_by_retrieval_day(tmp_path: Path) -> None:
    root, history = tmp_path / "data", tmp_path / "data.history"
    rel = "create_date=2024-03-01/20240301-20240304.parquet"
    # One harvest whose pages straddled midnight.
    write(root, rel, [1, 2, 3], [MONDAY, MONDAY, TUESDAY])
    assert keep_history(root, history, [rel]) == 3
    assert keep_history(root, history, [rel]) == 0  # a second try (after a crash) adds nothing
    table = ds.dataset(history, format="parquet", partitioning="hive").to_table()
    ids, retrieved = table.column("id").to_pylist(), table.column("retrieved_date").to_pylist()
    days = dict(zip(ids, retrieved, strict=True))
    assert {k: str(v) for k, v in days.items()} == {
        1: "2024-03-04",
        2: "2024-03-04",
        3: "2024-03-05",
    }
    assert "create_date" in table.column_names  # the dataset's own partitions are kept
    assert not list(root.glob("**/*history*"))  # beside the dataset, never inside it


def test_rows_of_the_refresh_itself_are_never_history(tmp_path: Path) -> None:
    """After a crash between the rename of a refresh's files and their commit, the "old" file
    already holds the refresh's rows: they are not superseded, nothing is copied."""
    root, history = tmp_path / "data", tmp_path / "data.history"
    rel = "create_date=2024-03-01/20240301-20240304.parquet"
    write(root, rel, [1, 2], [TUESDAY, TUESDAY])
    assert keep_history(root, history, [rel], before=MONDAY) == 0
    assert not history.exists() or not list(history.rglob("*.parquet"))
    write(root, rel, [1, 2], [MONDAY, TUESDAY])
    assert keep_history(root, history, [rel], before=TUESDAY) == 1
