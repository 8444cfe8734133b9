"""Bounded memory: finalizing and verifying a big plan shard must not load it whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import resource, sys
from pathlib import Path
import pyarrow as pa, pyarrow.compute as pc
from harvester.sink import finalize_plan_shard, normalise_page, verify, write_segment
from tests.sink._data import FULL, JAN1, NOW, video

root, staging = Path(sys.argv[1]) / "data", Path(sys.argv[1]) / "staging"
page = [video(i, JAN1 + i * 17) for i in range(2000)]
batch = normalise_page(page, FULL, leaf_key="k", window=(JAN1, JAN1 + 31 * 86400),
                       source="rqs", retrieved_at=NOW).batch
segments = []
for n in range(300):  # 600,000 rows, ~20 partitions
    ids = pc.add(batch.column("id"), n * 2000)
    b = batch.set_column(0, batch.schema.field(0), ids)
    segments.append(write_segment(staging, "20230101-20230131", n, b).path)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
files = finalize_plan_shard(root, staging, FULL, "20230101-20230131", segments)
report = verify(root, {f.path: f.rows for f in files})
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
assert report.ok and report.rows == 600_000, report
print((peak - base) // 1024, peak // 1024)
"""


@pytest.mark.slow
def test_finalize_and_verify_stay_flat(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=root, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    growth, peak = map(int, out.stdout.split())
    assert growth < 200 and peak < 300, out.stdout
