"""A dataset in S3 through the real CLI: a whole run, `verify`, `status` and `report`, and every
way the bucket can be wrong: exit 2 and one line naming the problem and the fix, no traceback,
no secret anywhere."""

from __future__ import annotations

import json
import socket
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests._s3 import ACCESS_KEY, SECRET_KEY, Bucket
from tests.reliability._cli import one_error_line, truth, write
from tests.reliability.conftest import SIM_ENV, harvester

START = date(2022, 3, 1)


#: What else would point the AWS SDK at credentials of the machine the tests run on.
_ELSEWHERE = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE",
              "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
              "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN")  # fmt: skip


def env(bucket: Bucket, **changes: str | None) -> dict[str, str]:
    out = {k: v for k, v in SIM_ENV.items() if k not in _ELSEWHERE} | bucket.env()
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def test_run_verify_status_report_from_the_bucket_with_no_secret_anywhere(
    tmp_path: Path, s3: Bucket, clean_sim: Any
) -> None:
    config = write(tmp_path, clean_sim, start=START, days=4, output=s3.url("cli/storm"))
    log = tmp_path / "run.jsonl"
    ran = harvester(
        "run", str(config), "--no-progress", "--log-file", str(log), env=env(s3), timeout=180
    )
    assert ran.returncode == 0, ran.stderr
    verify = harvester("verify", str(config), env=env(s3))
    assert verify.returncode == 0 and verify.stdout.startswith("ok: "), verify.stdout
    status = harvester("status", "--json", str(config), env=env(s3))
    assert status.returncode == 0, status.stderr
    rows = json.loads(status.stdout)["dataset_rows"]
    report = harvester("report", str(config), "--out", str(tmp_path / "r.html"), env=env(s3))
    assert report.returncode == 0, report.stderr
    # Every record of the oracle, once, in the bucket (verify counted them there).
    assert rows == len(truth(clean_sim, START, 4))
    keys = s3.listing("cli/storm/")
    assert "cli/storm/_harvest.json" in keys and not [k for k in keys if "_staging" in k]
    # The credentials reach the store through the environment only.
    places = [log, config, *tmp_path.glob("*.sqlite*"), tmp_path / "r.html"]
    blobs = [p.read_bytes() for p in places if p.is_file()]
    blobs += [s3.client.get_object(Bucket=s3.name, Key=k)["Body"].read() for k in keys]
    blobs += [(ran.stdout + ran.stderr + status.stdout + verify.stdout).encode()]
    for blob in blobs:
        assert SECRET_KEY.encode() not in blob and ACCESS_KEY.encode() not in blob


def sent(sim: Any) -> int:
    """Requests the simulator counted, every day summed."""
    days = sim.get("/_sim/stats")["quota"]["days"]
    return sum(int(d["requests"]) for d in days.values())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "where", "changes", "expected"),
    [
        pytest.param(
            "no such bucket",
            "s3://no-such-bucket-here/x",
            {},
            "bucket 'no-such-bucket-here'",
            id="no-bucket",
        ),
        pytest.param(
            "no credentials",
            "BUCKET",
            {
                "AWS_ACCESS_KEY_ID": None,
                "AWS_SECRET_ACCESS_KEY": None,
                "AWS_SHARED_CREDENTIALS_FILE": "NOFILE",
                "AWS_CONFIG_FILE": "NOFILE",
            },
            "no AWS credentials found",
            id="no-credentials",
        ),
        pytest.param(
            "unreachable endpoint",
            "BUCKET",
            {"AWS_ENDPOINT_URL": "PORT"},
            "cannot reach",
            id="unreachable",
        ),
    ],
)
def test_a_bucket_that_cannot_be_used_is_one_line_and_exit_2(
    tmp_path: Path,
    s3: Bucket,
    clean_sim: Any,
    case: str,
    where: str,
    changes: dict[str, str | None],
    expected: str,
) -> None:
    url = s3.url("x") if where == "BUCKET" else where
    config = write(tmp_path, clean_sim, start=START, days=2, output=url)
    fixed = {k: str(tmp_path / "nothing") if v == "NOFILE" else v for k, v in changes.items()}
    if fixed.get("AWS_ENDPOINT_URL") == "PORT":
        fixed["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{_free_port()}"
    before = sent(clean_sim)
    done = harvester("run", str(config), env=env(s3, **fixed), timeout=60)
    assert done.returncode == 2, (case, done.stdout, done.stderr)
    line = one_error_line(done.stderr)
    print(line)
    assert "output.path" in line and expected in line and "; " in line, line
    assert SECRET_KEY not in done.stderr
    assert sent(clean_sim) == before, "nothing is sent"


def test_verify_before_any_run_names_a_bucket_that_does_not_exist(
    tmp_path: Path, s3: Bucket, clean_sim: Any
) -> None:
    """No state yet is not the problem: the bucket is (exit 2, one line, not exit 1)."""
    config = write(tmp_path, clean_sim, start=START, days=2, output="s3://no-such-bucket-here/x")
    done = harvester("verify", str(config), env=env(s3), timeout=60)
    assert done.returncode == 2, (done.stdout, done.stderr)
    line = one_error_line(done.stderr)
    assert "output.path" in line and "bucket 'no-such-bucket-here'" in line, line
    # Its bucket there, a study that never ran has nothing to verify (exit 1).
    config = write(tmp_path, clean_sim, start=START, days=2, output=s3.url("never-ran"))
    done = harvester("verify", str(config), env=env(s3), timeout=60)
    assert done.returncode == 1 and "no state yet" in done.stdout + done.stderr, done
