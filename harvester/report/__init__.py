"""`harvester report`: one self-contained HTML page of where a study stands, for people.

It reads the state store, the manifest and the dataset (with DuckDB), never the API, and takes
no lock: it can be written beside a live run. The charts are plotly figures with plotly.js
embedded in the page, so the file opens anywhere without a network.
"""

from __future__ import annotations

import time
from pathlib import Path

from harvester.config import Study
from harvester.report._facts import INDEX_LAG, ReportFacts, gather

__all__ = ["INDEX_LAG", "ReportFacts", "default_report_path", "gather", "write_report"]


def default_report_path(study: Study) -> Path:
    """Beside the state (the dataset's folder holds only what readers should scan)."""
    return study.state_path.with_name(f"{study.name}.report.html")


def write_report(study: Study, out: Path | None = None, *, now: float | None = None) -> Path:
    """Write the report of `study` to `out` (default: beside its state); returns the path.

    Written under a temporary name and renamed: a browser reloading the page never sees half.
    """
    from harvester.report._page import render  # plotly only when a page is drawn

    path = default_report_path(study) if out is None else out
    page = render(gather(study, now=time.time() if now is None else now))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
