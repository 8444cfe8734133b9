"""Where a dataset lives, as the study file gives it: a folder, or an object-store URL.

Checked for shape only (no network, no pyarrow): the study file loader refuses a malformed
URL in one line, and the sink opens it (`harvester.sink.store`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

__all__ = ["OBJECT_SCHEMES", "check_dataset_url", "is_url", "redacted", "sibling_url"]

#: URL schemes of the object stores pyarrow has a filesystem for.
OBJECT_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss")
_S3_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def is_url(location: str) -> bool:
    return "://" in location


def check_dataset_url(url: str) -> str:
    """`url` checked for shape and normalised (`s3://bucket/prefix`); ValueError saying what
    is wrong otherwise. Credentials in the URL are refused: they belong in the environment or
    ~/.aws, never in a study file."""
    scheme = url.strip().partition("://")[0].lower()
    if scheme not in OBJECT_SCHEMES:
        known = ", ".join(f"{s}://" for s in OBJECT_SCHEMES)
        raise ValueError(f"unknown scheme {scheme + '://'!r}; use a folder or {known}")
    # Azure names its container `container@account`; S3 and GCS have no `@` in a URL but
    # before credentials (which may hold a `/` of their own).
    if (scheme in ("s3", "gs", "gcs") and "@" in url) or "?" in url or "#" in url:
        raise ValueError(
            "holds credentials or options; give the bare bucket and prefix (credentials come "
            "from the environment or ~/.aws)"
        )
    parts = urlsplit(url.strip())
    bucket, prefix = parts.netloc, parts.path.strip("/")
    if not bucket:
        raise ValueError(f"names no bucket; write it like {scheme}://bucket/prefix")
    if scheme == "s3" and not _S3_BUCKET.fullmatch(bucket):
        raise ValueError(
            f"names no valid bucket ({bucket!r}); a bucket is 3 to 63 lowercase letters, "
            "digits, dots and hyphens"
        )
    if not prefix:
        raise ValueError(
            f"names no prefix; write it like {scheme}://{bucket}/my-study (a dataset owns its "
            "prefix)"
        )
    if any(seg in ("", ".", "..") for seg in prefix.split("/")):
        raise ValueError("has an empty, '.' or '..' path segment; write it like s3://bucket/a/b")
    return f"{scheme}://{bucket}/{prefix}"


def redacted(url: str) -> str:
    """`url` as a message may show it: whatever stands between the scheme and the last `@`
    (a key id and a secret key, which may hold `/`) is replaced."""
    scheme, sep, rest = url.partition("://")
    if "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}{sep}{rest}"


def sibling_url(url: str, suffix: str) -> str:
    """`s3://b/data/x` → `s3://b/data/x.comments`: a dataset beside another."""
    return url.rstrip("/") + suffix
