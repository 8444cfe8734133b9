"""The dataset as readers see it: its Parquet files, and a DuckDB view over them.

A local dataset is read by DuckDB itself (`read_parquet` over a glob). DuckDB reads an object
store only through its `httpfs` extension, which is downloaded at first use and may not be
installable where harvester runs; there pyarrow lists and streams the files and DuckDB scans
them as an Arrow dataset, asking only for the columns a query needs.
"""

from __future__ import annotations

from typing import Any

from harvester.sink.dataset import reader_visible
from harvester.sink.store import DatasetStore

__all__ = ["dataset_files", "duckdb_files", "duckdb_view"]


def dataset_files(store: DatasetStore) -> list[str]:
    """The dataset's Parquet files (relative paths), without `_staging/` or the manifest."""
    return [rel for rel in store.files() if rel.endswith(".parquet") and reader_visible(rel)]


def duckdb_view(con: Any, name: str, store: DatasetStore) -> bool:
    """Make `name` a view of the whole dataset in DuckDB connection `con`, hive partition
    columns included; False (and no view) when the dataset has no file yet."""
    if not dataset_files(store):
        return False
    local = store.local
    if local is not None:
        glob = str(local / "**" / "*.parquet").replace("'", "''")
        con.execute(
            f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet('{glob}', "
            "hive_partitioning = true, union_by_name = true)"
        )
        return True
    import pyarrow.dataset as pads

    files = pads.dataset(
        store.path(),
        filesystem=store.filesystem,
        format="parquet",
        partitioning="hive",
        # pyarrow's default too, said here because it is what keeps `_staging/` out.
        ignore_prefixes=[".", "_"],
    )
    con.register(name, files)
    return True


def duckdb_files(con: Any, name: str, store: DatasetStore, files: list[str]) -> None:
    """Make `name` a view of these Parquet files (relative to `store`) in connection `con`:
    partition columns are not decoded, only the files' own columns are read."""
    if store.local is not None:
        # A view cannot take a prepared parameter: the list is spelled out, quotes doubled.
        paths = ", ".join("'" + store.path(rel).replace("'", "''") + "'" for rel in files)
        con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet([{paths}])")
        return
    import pyarrow.dataset as pads

    con.register(
        name,
        pads.dataset(
            [store.path(rel) for rel in files], filesystem=store.filesystem, format="parquet"
        ),
    )
