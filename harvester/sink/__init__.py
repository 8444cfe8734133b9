"""The sink: pages → staged segments → partitioned Parquet, crash-safe and in flat memory.

`records` normalises a page, `staging` lands it beside the state, `dataset` writes a plan
shard's final files, `compaction` merges coarse partitions, `verify` checks the result; `store`
is where they all write: a local folder or an object-store prefix.
"""

from __future__ import annotations

from harvester.sink.compaction import (
    Compaction,
    discard_compaction,
    prepare_compaction,
    retire_compacted,
    swap_compaction,
)
from harvester.sink.dataset import (
    MANIFEST,
    ROW_GROUP_ROWS,
    STAGING,
    DatasetFile,
    cleanup_strays,
    finalize_plan_shard,
    write_manifest,
)
from harvester.sink.partition import HIVE_NULL, encode_value, partition_path
from harvester.sink.records import PageResult, normalise_page, normalise_rows
from harvester.sink.schema import DERIVED_PARTITIONS, PROVENANCE, Layout, arrow_type, layout
from harvester.sink.staging import (
    Segment,
    cleanup_staging,
    read_ids,
    read_segments,
    remove_leaves,
    write_segment,
)
from harvester.sink.store import DatasetStore, LocalStore, ObjectStore, as_store, open_dataset
from harvester.sink.verify import VerifyReport, verify

__all__ = [
    "DERIVED_PARTITIONS",
    "HIVE_NULL",
    "MANIFEST",
    "PROVENANCE",
    "ROW_GROUP_ROWS",
    "STAGING",
    "Compaction",
    "DatasetFile",
    "DatasetStore",
    "Layout",
    "LocalStore",
    "ObjectStore",
    "PageResult",
    "Segment",
    "VerifyReport",
    "arrow_type",
    "as_store",
    "cleanup_staging",
    "cleanup_strays",
    "discard_compaction",
    "encode_value",
    "finalize_plan_shard",
    "layout",
    "normalise_page",
    "normalise_rows",
    "open_dataset",
    "partition_path",
    "prepare_compaction",
    "read_ids",
    "read_segments",
    "remove_leaves",
    "retire_compacted",
    "swap_compaction",
    "verify",
    "write_manifest",
    "write_segment",
]
