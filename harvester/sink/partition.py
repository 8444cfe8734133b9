"""Hive partition segments that cannot escape the dataset root.

Values are percent-encoded down to `[A-Za-z0-9_~%-]` (dots included, so `.`/`..`/leading dots
cannot occur), which pyarrow, DuckDB and Polars all decode back. Null and empty values use the
hive default partition, which all three read as null. Long values are cut and given a hash suffix
so two long values never share a directory; the cut is lossy, so the sink keeps the raw value.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from urllib.parse import quote

__all__ = ["HIVE_NULL", "MAX_SEGMENT", "encode_value", "is_lossless", "partition_path"]

HIVE_NULL = "__HIVE_DEFAULT_PARTITION__"
MAX_SEGMENT = 64


@lru_cache(maxsize=4096)
def encode_value(value: str | None) -> str:
    """The directory-safe form of one partition value."""
    if value is None or value == "":
        return HIVE_NULL
    encoded = _quote(value)
    if len(encoded) <= MAX_SEGMENT:
        return encoded
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    head = encoded[: MAX_SEGMENT - 13]
    cut = head.rfind("%", len(head) - 2)  # never cut an escape in half
    if cut != -1:
        head = head[:cut]
    return f"{head}~{digest}"


@lru_cache(maxsize=4096)
def _quote(value: str) -> str:
    encoded = quote(value, safe="-_~", errors="surrogatepass").replace(".", "%2E")
    if encoded == HIVE_NULL:  # a real value spelled like the null marker stays distinct
        encoded = "%5F" + encoded[1:]
    return encoded


def is_lossless(value: str | None) -> bool:
    """Whether readers get `value` back from the path (else the sink keeps it in `_extra`)."""
    return value is not None and value != "" and len(_quote(value)) <= MAX_SEGMENT


def partition_path(pairs: tuple[tuple[str, str | None], ...]) -> str:
    """`create_date=2023-01-05/region_code=US`: relative, POSIX, one segment per column."""
    return "/".join(f"{name}={encode_value(value)}" for name, value in pairs)
