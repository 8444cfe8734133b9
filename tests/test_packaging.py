"""The distribution a user installs: built from this checkout, installed into a fresh venv."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest

import harvester

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_a_wheel_built_from_the_repo_installs_and_runs(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    # The build backend comes from the lock, as `make` installs it: no unpinned download.
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps"),
            *("--no-build-isolation", "--wheel-dir", str(wheels), str(REPO)),
        ],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("*.whl")
    # The distribution's own name, never the unrelated `harvester` of the package index.
    assert wheel.name.startswith(f"tiktok_research_harvester-{harvester.__version__}-")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        cwd=tmp_path,
    )
    done = subprocess.run(
        [str(env_dir / "bin" / "harvester"), "--version"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert done.stdout.strip() == f"harvester, version {harvester.__version__}"
    # The installed package is the wheel's, not this checkout's.
    where = subprocess.run(
        [str(env_dir / "bin" / "python"), "-c", "import harvester; print(harvester.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    assert Path(where.stdout.strip()).is_relative_to(env_dir)
