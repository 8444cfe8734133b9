"""The `harvester` command: run, plan, status, verify, report, cancel, aggregate, simulate.

Exit codes are a contract for schedulers (docs/scheduling.md): 0 done, 1 failure, 2 bad config
or query, 75 daily quota spent with `on_exhausted = "exit"`, 99 skipped because another run of
the study is live, 130/143 after a clean checkpoint on SIGINT/SIGTERM. Every error the user can
fix is one line on stderr, never a traceback.
"""

from __future__ import annotations

import functools
import gc
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import click

from harvester._exceptions import HarvesterError, StudyLocked, UserError
from harvester._exit import EXIT_FAILURE, EXIT_LOCKED, EXIT_OK, EXIT_USER
from harvester._version import __version__

P = ParamSpec("P")
T = TypeVar("T")


def _fail(message: str, code: int, *, what: str = "error") -> None:
    # One line, whatever the message: a scheduler's log shows it whole.
    from harvester.logs import scrub  # structlog is slow to import: only on the way out

    click.echo(f"harvester: {what}: " + scrub(" ".join(message.split())), err=True)
    sys.exit(code)


def _guard(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn harvester's errors into one line and the right exit code."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except UserError as exc:
            _fail(str(exc), EXIT_USER)
        except StudyLocked as exc:
            # Not a failure: the live run is doing the work. Schedulers treat 99 as "skipped".
            _fail(f"{exc} (exit {EXIT_LOCKED})", EXIT_LOCKED, what="skipped")
        except HarvesterError as exc:
            _fail(str(exc), EXIT_FAILURE)
        except OSError as exc:
            _fail(f"{exc.strerror or exc}: {exc.filename or ''}".strip(": "), EXIT_FAILURE)
        raise AssertionError("unreachable")

    return wrapper


@contextmanager
def _loading() -> Iterator[None]:
    """Import without the cyclic collector: every object a module creates lives as long as the
    process, so the collections that loading set off (dozens, over a growing heap) free nothing."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# The loader checks the path itself: a folder or a missing file is one line with the fix, not
# click's three-line usage error.
config_argument = click.argument("config", type=click.Path(path_type=Path))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
# From the package itself, not from installed metadata: the distribution's name is not the
# import name, and a source checkout on PYTHONPATH has no metadata at all.
@click.version_option(__version__, prog_name="harvester")
def main() -> None:
    """Harvest TikTok research data into a complete, deduplicated, partitioned Parquet dataset."""
    with _loading():
        from harvester.logs import configure_logging

    # A command's stdout is its report (`status --json` is parsed by scripts): events, such as
    # the token `cancel` fetches, go to stderr and only from warnings up. `run` adds its log file.
    configure_logging()


@main.command()
@config_argument
@click.option("--replan", is_flag=True, help="Accept a changed study: plan it afresh.")
@click.option("--retry-failed", is_flag=True, help="Take parked windows up again.")
@click.option(
    "--cancel-on-exit", is_flag=True, help="On SIGINT/SIGTERM also cancel remote tasks in flight."
)
@click.option(
    "--log-file", type=click.Path(path_type=Path), help="JSON log (default: beside state)."
)
@click.option(
    "--progress/--no-progress",
    default=True,
    help="Live display on a terminal, a plain line every 30 s elsewhere (default: on).",
)
@_guard
def run(
    config: Path,
    replan: bool,
    retry_failed: bool,
    cancel_on_exit: bool,
    log_file: Path | None,
    progress: bool,
) -> None:
    """Plan the study if new, then harvest until it is complete."""
    with _loading():
        from harvester.config import load_study, resolve_credentials
        from harvester.orchestrator import RunOptions, run_study

    # The modules just imported are hundreds of thousands of objects that live as long as the
    # process: out of the collector's sight, every full collection during the run and the one
    # at exit skip them. And a decoded page is tens of thousands of containers at once: the
    # youngest generation is collected every 50,000 allocations instead of 700, so a page is
    # not walked again and again while it is built (cyclic garbage is rare here; what is
    # freed by reference counts is freed at once either way).
    gc.freeze()
    gc.set_threshold(50_000)
    study = load_study(config)
    credentials = resolve_credentials(study)
    options = RunOptions(
        replan=replan,
        retry_failed=retry_failed,
        cancel_on_exit=cancel_on_exit,
        log_file=log_file,
        progress=progress,
    )
    sys.exit(run_study(study, credentials, options))


@main.command()
@config_argument
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_guard
def plan(config: Path, as_json: bool) -> None:
    """Show the shards and the estimated requests, records and days of quota (no requests)."""
    from harvester.config import load_study
    from harvester.orchestrator import plan_report

    report = plan_report(load_study(config))
    _emit(report, as_json)


@main.command()
@config_argument
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_guard
def status(config: Path, as_json: bool) -> None:
    """Shards per state, records, quota used today, errors by kind."""
    from harvester.config import load_study
    from harvester.orchestrator import status_report

    _emit(status_report(load_study(config)), as_json)


@main.command()
@config_argument
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_guard
def quota(config: Path, as_json: bool) -> None:
    """Today's use of the study's quota (its pool's) by study and worker."""
    from harvester.config import load_study
    from harvester.orchestrator import quota_report

    _emit(quota_report(load_study(config)), as_json)


@main.command()
@config_argument
@_guard
def verify(config: Path) -> None:
    """Check the dataset against state; exit 0 only if everything holds."""
    from harvester.config import load_study
    from harvester.orchestrator import verify_study

    report = verify_study(load_study(config))
    _emit(report, False)
    sys.exit(EXIT_OK if report.get("ok") else EXIT_FAILURE)


@main.command()
@config_argument
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the page (default: <study name>.report.html beside the state).",
)
@_guard
def report(config: Path, out: Path | None) -> None:
    """Write one self-contained HTML page of the study's progress (opens without a network)."""
    from harvester.config import load_study
    from harvester.report import write_report

    click.echo(write_report(load_study(config), out))


@main.command()
@config_argument
@_guard
def cancel(config: Path) -> None:
    """Cancel the study's remote tasks that are still in flight."""
    from harvester.config import load_study, resolve_credentials
    from harvester.orchestrator import cancel_study

    study = load_study(config)
    _emit(cancel_study(study, resolve_credentials(study)), False)


@main.command()
@config_argument
@click.argument("query", type=click.Path(path_type=Path))
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path),
    help="Where to write the aggregate: .csv or .parquet.",
)
@click.option(
    "--min-group-size",
    default=10,
    show_default=True,
    type=int,
    help="Rows standing for fewer videos (column n) are suppressed.",
)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@_guard
def aggregate(config: Path, query: Path, out: Path, min_group_size: int, as_json: bool) -> None:
    """Run a DuckDB SELECT over the dataset (view `videos`) and write only its aggregate rows:
    each must carry n >= --min-group-size videos, and no identifier or free-text column."""
    from harvester.aggregate import run_aggregate
    from harvester.config import load_study

    report = run_aggregate(load_study(config), query, out, min_group_size=min_group_size)
    _emit(report.as_dict(), as_json)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback unless told.")
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--profile",
    default="clean",
    show_default=True,
    type=click.Choice(["clean", "flaky", "quota", "hostile"]),
)
@click.option("--latency", default=0.0, show_default=True, type=float, help="Seconds a request.")
@click.option(
    "--stage",
    default="execution",
    show_default=True,
    type=click.Choice(["execution", "test"]),
    help="RQS stage: test answers random samples of creators with 25,000+ followers, "
    "5,000 records a day.",
)
@click.option("--videos-per-day", default=None, type=int, help="Mean corpus size per day.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="Any other SimulatorConfig number or switch, e.g. --set max_running_tasks=5 or "
    "--set approximate_matching=0 (repeatable).",
)
@_guard
def simulate(
    host: str,
    port: int,
    seed: int,
    profile: str,
    latency: float,
    stage: str,
    videos_per_day: int | None,
    settings: tuple[str, ...],
) -> None:
    """Serve the built-in simulator of both APIs (for demos, tests and benchmarks)."""
    from harvester.simulator import SimulatorConfig, run_forever

    overrides: dict[str, Any] = {
        "seed": seed,
        "profile": profile,
        "latency": latency,
        "stage": stage,
    }
    if videos_per_day is not None:
        overrides["videos_per_day"] = videos_per_day
    overrides.update(_simulator_settings(settings))
    run_forever(SimulatorConfig(**overrides), host=host, port=port)


#: SimulatorConfig switches `--set` takes as on/off (their default depends on the profile).
_SWITCHES = ("approximate_matching", "indexing_lag")
_ON_OFF = {"1": True, "true": True, "on": True, "0": False, "false": False, "off": False}


def _simulator_settings(settings: tuple[str, ...]) -> dict[str, int | float | bool]:
    """`NAME=VALUE` pairs for numeric SimulatorConfig fields and its on/off switches; anything
    else is a usage error."""
    import dataclasses

    from harvester.simulator import SimulatorConfig

    numeric: dict[str, Any] = {
        f.name: f.default
        for f in dataclasses.fields(SimulatorConfig)
        if type(f.default) in (int, float)
    }
    out: dict[str, int | float | bool] = {}
    for item in settings:
        name, _, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if name in _SWITCHES:
            switch = _ON_OFF.get(value.strip().lower())
            if switch is None:
                raise click.BadParameter(
                    f"{item!r}: {value!r} is not on or off; use 1/0, true/false or on/off",
                    param_hint="--set",
                )
            out[name] = switch
            continue
        if name not in numeric:
            raise click.BadParameter(
                f"{name!r} is not a simulator setting; use one of "
                + ", ".join(sorted([*numeric, *_SWITCHES])),
                param_hint="--set",
            )
        try:
            out[name] = type(numeric[name])(value)
        except ValueError:
            raise click.BadParameter(
                f"{item!r}: {value!r} is not a number", param_hint="--set"
            ) from None
    return out


def _emit(report: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    text = report.get("text") if isinstance(report, dict) else None
    click.echo(text if text else json.dumps(report, indent=2, default=str))


if __name__ == "__main__":  # pragma: no cover
    main()
