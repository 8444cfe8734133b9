"""The version, in one place (the manifest and the state record it), and what wrote a dataset."""

from __future__ import annotations

import platform
from importlib import metadata

__version__ = "0.1.0"

#: The libraries whose versions decide the bytes of a dataset: pyarrow writes the Parquet files,
#: orjson decodes every page, aiohttp carries it. A reader comparing two datasets needs these.
DATASET_WRITERS = ("pyarrow", "orjson", "aiohttp")


def written_by() -> dict[str, str]:
    """harvester's version, Python's and every dataset writer's, for `_harvest.json`."""
    versions = {"harvester": __version__, "python": platform.python_version()}
    for name in DATASET_WRITERS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:  # pragma: no cover - a dependency is installed
            versions[name] = "unknown"
    return versions
