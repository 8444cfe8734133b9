"""Chaos with the dataset in S3: three `harvester run` workers on one study against the flaky
simulator, the state in PostgreSQL, the dataset in a bucket of moto's server; workers are
SIGKILLed at random and started again, then a final run. The dataset read back from the bucket
equals the oracle, with no id twice; the bucket holds nothing but committed files and
`_harvest.json` (no staged page, no temporary name); `harvester verify` passes.
(`scripts/chaos_workers.py --s3` runs the same at a bigger size.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests._s3 import Bucket
from tests.reliability.conftest import load_script

pytestmark = pytest.mark.postgres


def test_killed_workers_writing_to_s3_lose_nothing(tmp_path: Path, s3: Bucket) -> None:
    from tests._postgres import _reachable

    if not _reachable():
        pytest.skip("no PostgreSQL server answers on 127.0.0.1:5432 (CI starts one)")
    chaos = load_script("chaos_workers")
    bucket = chaos.Bucket(tmp_path, endpoint=s3.endpoint, name=s3.name)
    lines: list[str] = []
    # The script raises on a lost or doubled record, a leftover object or a failed verify.
    figures = chaos.workers_run(tmp_path / "w", 5, 3, lines.append, days=40, bucket=bucket)
    print(lines, figures)
    assert figures["kills"] >= 1 and figures["records"] > 1000
    assert figures["records_lost"] == 0 and figures["duplicates"] == 0
    assert not [k for k in s3.listing() if "_staging" in k]
