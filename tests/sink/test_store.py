"""The dataset store in a bucket (moto's S3 server on loopback), checked against boto3's view of
the bucket: an object appears only complete, a failed write leaves nothing, the listing and the
sweep see objects and never directory markers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harvester._exceptions import ConfigError
from harvester.sink import ObjectStore, open_dataset
from harvester.sink.dataset import write_parquet
from harvester.sink.store import LocalStore
from tests._s3 import Bucket


def test_an_object_appears_only_when_its_upload_is_complete(s3: Bucket) -> None:
    store = open_dataset(s3.url("ds"))
    assert isinstance(store, ObjectStore)
    with store.writing("part=a/x.parquet") as tmp:
        pq.write_table(pa.table({"id": [1, 2, 3]}), tmp)
        assert s3.listing() == []  # written on the machine, not yet in the bucket
    assert s3.listing() == ["ds/part=a/x.parquet"]
    with store.open_input("part=a/x.parquet") as src:
        assert pq.read_table(src).column("id").to_pylist() == [1, 2, 3]


def test_a_failed_write_leaves_nothing_in_the_bucket(s3: Bucket) -> None:
    store = open_dataset(s3.url("ds"))

    def batches() -> Iterator[pa.RecordBatch]:
        yield pa.record_batch({"id": pa.array([1, 2], pa.int64())})
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_parquet(batches(), store, "part=a/x.parquet", pa.schema({"id": pa.int64()}))
    assert s3.listing() == []


def test_listing_and_sweep_see_objects_not_directory_markers(s3: Bucket) -> None:
    store = open_dataset(s3.url("ds"))
    for rel in ("a/1.parquet", "a/2.parquet", "_staging/l/000001.arrow", "_harvest.json"):
        store.write_bytes(rel, b"x")
    store.delete(["a/1.parquet"])  # pyarrow marks `a/` as a folder still there
    assert "ds/a/" in s3.listing()
    assert store.files() == ["_harvest.json", "_staging/l/000001.arrow", "a/2.parquet"]
    removed = store.sweep({"a/2.parquet"}, keep=lambda rel: rel.startswith("_"))
    assert removed == []
    assert store.sweep(set(), keep=lambda rel: rel == "_harvest.json") == [
        "_staging/l/000001.arrow",
        "a/2.parquet",
    ]
    assert [k for k in s3.listing() if not k.endswith("/")] == ["ds/_harvest.json"]


def test_the_sibling_of_a_prefix_is_beside_it(s3: Bucket) -> None:
    store = open_dataset(s3.url("lab/nl"))
    history = store.sibling(".history")
    history.write_bytes("x.parquet", b"x")
    assert s3.listing() == ["lab/nl.history/x.parquet"]
    assert history.url == f"s3://{s3.name}/lab/nl.history"
    assert store.child("_staging").url == f"s3://{s3.name}/lab/nl/_staging"


def test_a_local_store_is_a_plain_folder(tmp_path: Path) -> None:
    store = open_dataset(str(tmp_path))
    assert isinstance(store, LocalStore) and store.local == tmp_path


def test_a_url_that_is_not_a_dataset_is_refused_in_one_line(s3: Bucket) -> None:
    with pytest.raises(ConfigError, match="names no prefix"):
        open_dataset(f"s3://{s3.name}")
    with pytest.raises(ConfigError, match="does not exist"):
        open_dataset("s3://no-such-bucket-anywhere/x")
