"""docs/scheduling.md's examples are run, not only read: the cron wrapper and the Kubernetes
container's script against the simulator for every exit status, the systemd units through
`systemd-analyze verify`, the Kubernetes objects parsed (and the study in the ConfigMap loaded),
and the Airflow task's exit-status mapping with the real harvester."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
import yaml

from harvester import StudyLocked
from harvester._exit import EXIT_FAILURE, EXIT_LOCKED, EXIT_OK, EXIT_QUOTA, EXIT_USER
from harvester.config import Study, loads_study
from harvester.simulator.testing import running_simulator
from tests.orchestrator.conftest import SIM, SIM_ENV, make_study

DOC = Path(__file__).resolve().parents[1] / "docs" / "scheduling.md"
HARVESTER = str(Path(sys.executable).with_name("harvester"))
HOLD = """
import sys, time
from harvester.state import SqliteState
s = SqliteState(sys.argv[1])
s.lock()
print("locked", flush=True)
time.sleep(120)
"""


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)


@contextmanager
def held_lock(state: Path) -> Iterator[int]:
    """Another live process holding the study's run lock, as a running harvest does."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(state)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        yield proc.pid
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_the_exit_status_table_is_the_one_the_code_uses() -> None:
    table = re.findall(r"^\| `(\d+)`(?: / `(\d+)`)? \|", DOC.read_text(), re.M)
    documented = {int(c) for row in table for c in row if c}
    assert documented == {EXIT_OK, EXIT_QUOTA, EXIT_LOCKED, EXIT_USER, EXIT_FAILURE, 130, 143}
    assert EXIT_LOCKED == StudyLocked.exit_code == 99


# --------------------------------------------------------------------------- cron


def finishing_study(root: Path, base_url: str) -> Study:
    """A two-day public-API study that completes in one run (exit 0)."""
    return make_study(root, base_url, source="research-api", days=2)


def quota_spent_study(root: Path, base_url: str) -> Study:
    """A study allowed one request a day that exits when it is spent (exit 75)."""
    return make_study(
        root, base_url, source="research-api", days=4, daily_requests=1, on_exhausted="exit"
    )


def run_script(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(script), *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_cron_wrapper_is_quiet_unless_a_human_is_needed(tmp_path: Path) -> None:
    (wrapper_text,) = [b for b in blocks("sh") if b.startswith("#!/bin/sh")]
    wrapper = tmp_path / "harvester-cron"
    wrapper.write_text(wrapper_text)
    wrapper.chmod(0o755)
    credentials = tmp_path / "credentials"
    credentials.write_text(
        "".join(f"export {k}={v}\n" for k, v in SIM_ENV.items())
    )  # the doc's form
    env = {
        "PATH": os.environ["PATH"],
        "HARVESTER": HARVESTER,
        "HARVESTER_LOGS": str(tmp_path / "logs"),
        "HARVESTER_CREDENTIALS": str(credentials),
    }

    async def cron(config: Path, **extra: str) -> subprocess.CompletedProcess[str]:
        return await anyio.to_thread.run_sync(
            lambda: run_script(wrapper, str(config), env={**env, **extra})
        )

    async with running_simulator("clean", **SIM) as sim:
        done = finishing_study(tmp_path / "done", sim.base_url)
        spent = quota_spent_study(tmp_path / "spent", sim.base_url)
        refused = finishing_study(tmp_path / "refused", sim.base_url)
        complete = await cron(done.config_path)
        with held_lock(done.state_path) as pid:
            skipped = await cron(done.config_path)
        quota = await cron(spent.config_path)
        wrong = tmp_path / "wrong-credentials"
        wrong.write_text(credentials.read_text().replace("sim-client-secret", "not-the-secret"))
        failed = await cron(refused.config_path, HARVESTER_CREDENTIALS=str(wrong))
    bad = await cron(tmp_path / "missing.toml")

    logs = tmp_path / "logs"
    assert (complete.returncode, complete.stdout, complete.stderr) == (0, "", "")
    # 99 and 75 are not a human's business: exit 0, nothing printed, the reason in the log.
    assert (skipped.returncode, skipped.stdout) == (0, "")
    # (The three studies share a file name, so one log: the lines of each run are in order.)
    log = (logs / "study.log").read_text()
    assert (
        f"harvester: skipped: study 'e2e' is already being harvested by another process (pid {pid})"
        in log
    )
    assert (quota.returncode, quota.stdout) == (0, "")
    assert "stopped: daily quota spent" in (logs / "study.log").read_text()
    # 1 and 2 are: cron mails what the wrapper prints.
    assert failed.returncode == 1, failed.stdout
    assert failed.stdout.startswith(f"harvester: {refused.config_path} failed (exit 1)")
    assert "credentials" in failed.stdout and "not-the-secret" not in failed.stdout
    assert bad.returncode == 2
    lines = bad.stdout.splitlines()
    assert lines[0] == f"harvester: {tmp_path / 'missing.toml'} needs fixing (exit 2):"
    assert lines[1].startswith("harvester: error: ") and len(lines) == 2


# --------------------------------------------------------------------------- systemd


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_systemd_units_verify_cleanly(tmp_path: Path) -> None:
    service, timer = blocks("ini")
    assert "SuccessExitStatus=75 99 143" in service and "RestartPreventExitStatus=2" in service
    # The doc's install path, pointed at this checkout's harvester so verify finds the binary.
    (tmp_path / "harvester@nl-election.service").write_text(
        service.replace("/opt/harvester/.venv/bin/harvester", HARVESTER)
    )
    (tmp_path / "harvester@nl-election.timer").write_text(timer)
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            str(tmp_path / "harvester@nl-election.service"),
            str(tmp_path / "harvester@nl-election.timer"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "" and result.stdout == "", result


# --------------------------------------------------------------------------- Kubernetes


def kubernetes_objects() -> dict[str, Any]:
    (text,) = blocks("yaml")
    return {o["kind"]: o for o in yaml.safe_load_all(text)}


def test_the_kubernetes_objects_hold_together(tmp_path: Path) -> None:
    objects = kubernetes_objects()
    assert set(objects) == {"Secret", "ConfigMap", "PersistentVolumeClaim", "CronJob"}
    cron = objects["CronJob"]["spec"]
    assert cron["concurrencyPolicy"] == "Forbid" and cron["timeZone"] == "Etc/UTC"
    job = cron["jobTemplate"]["spec"]
    pod = job["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
    (rule, _) = job["podFailurePolicy"]["rules"]
    assert rule["action"] == "FailJob" and rule["onExitCodes"]["values"] == [EXIT_USER]
    (container,) = pod["containers"]
    assert container["name"] == rule["onExitCodes"]["containerName"]
    assert container["envFrom"][0]["secretRef"]["name"] == objects["Secret"]["metadata"]["name"]
    assert set(objects["Secret"]["stringData"]) == set(SIM_ENV)
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    # The study in the ConfigMap is valid, and its output and state are on the volume.
    (name, text) = next(iter(objects["ConfigMap"]["data"].items()))
    assert container["args"][0].count(f"{mounts['config']}/{name}") == 1
    study = loads_study(text, Path(mounts["config"]) / name)
    assert study.quota.on_exhausted == "exit"
    assert study.output_path.is_relative_to(mounts["data"])
    assert study.state_path.is_relative_to(mounts["data"])


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_kubernetes_container_script_maps_exit_statuses(tmp_path: Path) -> None:
    script = kubernetes_objects()["CronJob"]["spec"]["jobTemplate"]["spec"]["template"]["spec"][
        "containers"
    ][0]["args"][0]
    env = {**SIM_ENV, "PATH": f"{Path(HARVESTER).parent}:{os.environ['PATH']}"}

    async def container(config: Path) -> subprocess.CompletedProcess[str]:
        text = script.replace("/config/nl-election.toml", str(config))
        return await anyio.to_thread.run_sync(
            lambda: subprocess.run(
                ["/bin/sh", "-c", text], capture_output=True, text=True, env=env, check=False
            )
        )

    async with running_simulator("clean", **SIM) as sim:
        spent = quota_spent_study(tmp_path / "spent", sim.base_url)
        quota = await container(spent.config_path)
        with held_lock(spent.state_path):
            skipped = await container(spent.config_path)
    bad = await container(tmp_path / "missing.toml")
    assert quota.returncode == 0 and "harvester exited 75: not a failure" in quota.stdout
    assert skipped.returncode == 0 and "harvester exited 99: not a failure" in skipped.stdout
    assert bad.returncode == EXIT_USER  # the pod fails; podFailurePolicy fails the Job


# --------------------------------------------------------------------------- Airflow


def airflow_stand_ins(variables: dict[str, str]) -> dict[str, types.ModuleType]:
    """The few Airflow names the DAG file imports (Airflow itself is not installed here): the
    decorators record what they are given, the exceptions are plain ones."""
    decorators = types.ModuleType("airflow.decorators")
    exceptions = types.ModuleType("airflow.exceptions")
    models = types.ModuleType("airflow.models")
    recorded: dict[str, Any] = {}

    def dag(**kw: Any) -> Callable[[Callable[[], None]], Callable[[], None]]:
        recorded["dag"] = kw
        return lambda fn: fn

    def task(**kw: Any) -> Callable[[Callable[[], None]], Callable[[], None]]:
        recorded["task"] = kw
        return lambda fn: lambda: recorded.setdefault("tasks", []).append(fn)

    decorators.dag = dag  # type: ignore[attr-defined]
    decorators.task = task  # type: ignore[attr-defined]
    decorators.recorded = recorded  # type: ignore[attr-defined]
    exceptions.AirflowSkipException = type("AirflowSkipException", (Exception,), {})  # type: ignore[attr-defined]
    exceptions.AirflowFailException = type("AirflowFailException", (Exception,), {})  # type: ignore[attr-defined]
    models.Variable = types.SimpleNamespace(get=variables.__getitem__)  # type: ignore[attr-defined]
    return {
        "airflow": types.ModuleType("airflow"),
        "airflow.decorators": decorators,
        "airflow.exceptions": exceptions,
        "airflow.models": models,
    }


@pytest.mark.slow
@pytest.mark.anyio
async def test_the_airflow_task_maps_exit_statuses_to_outcomes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (source,) = blocks("python")
    modules = airflow_stand_ins(
        {
            "tiktok_client_key": SIM_ENV["TIKTOK_CLIENT_KEY"],
            "tiktok_client_secret": SIM_ENV["TIKTOK_CLIENT_SECRET"],
        }
    )
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    namespace: dict[str, Any] = {"__name__": "harvest_nl_election"}
    exec(compile(source, "harvest_nl_election.py", "exec"), namespace)
    recorded = modules["airflow.decorators"].recorded
    assert recorded["dag"]["max_active_runs"] == 1 and recorded["dag"]["catchup"] is False
    assert recorded["dag"]["default_args"]["retries"] >= 1 and len(recorded["tasks"]) == 1
    namespace["HARVESTER"] = HARVESTER
    run_harvester = namespace["run_harvester"]
    skip = modules["airflow.exceptions"].AirflowSkipException
    fail = modules["airflow.exceptions"].AirflowFailException

    async def task(config: Path) -> BaseException | None:
        try:
            await anyio.to_thread.run_sync(run_harvester, str(config))
        except Exception as exc:
            return exc
        return None

    async with running_simulator("clean", **SIM) as sim:
        done = finishing_study(tmp_path / "done", sim.base_url)
        spent = quota_spent_study(tmp_path / "spent", sim.base_url)
        complete = await task(done.config_path)
        quota = await task(spent.config_path)
        with held_lock(done.state_path):
            skipped = await task(done.config_path)
    bad = await task(tmp_path / "missing.toml")
    assert complete is None
    assert isinstance(quota, skip) and "daily quota spent" in str(quota)
    assert isinstance(skipped, skip) and "already being harvested" in str(skipped)
    assert isinstance(bad, fail) and "missing.toml" in str(bad)
