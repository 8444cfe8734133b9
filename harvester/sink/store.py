"""Where a dataset lives: a local folder or an object-store prefix, behind one small interface.

The sink writes, lists, reads and deletes files only through a `DatasetStore`, so the same
code fills a folder and an `s3://bucket/prefix`. What differs is how a file appears complete:

- `LocalStore`: written under a hidden temporary name in its final folder, fsynced and renamed
  into place (`os.replace` is atomic on POSIX), the folder fsynced after.
- `ObjectStore`: written to a local temporary file first, then uploaded to its final key. An
  S3 PUT (or a multipart upload's completion) is atomic: the key shows the whole object or
  nothing, so no temporary name is ever visible in the bucket, and the state records a file
  only after its upload returned.

Credentials never pass through harvester: pyarrow's S3 filesystem takes them from the AWS
SDK's own chain (environment, `AWS_PROFILE`, `~/.aws`, instance and container roles).
Only the endpoint (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`) and region (`AWS_REGION`,
`AWS_DEFAULT_REGION`) are read here, because pyarrow does not read them itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs

from harvester._exceptions import ConfigError
from harvester._location import OBJECT_SCHEMES, check_dataset_url, is_url
from harvester.sink._files import fsync_dir, publish, sink_errors

__all__ = [
    "OBJECT_SCHEMES",
    "DatasetStore",
    "LocalStore",
    "ObjectStore",
    "as_store",
    "open_dataset",
]

_CREDENTIAL_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials"
)


class DatasetStore(ABC):
    """A dataset root. Paths given to it are relative POSIX paths (`part=x/file.parquet`)."""

    #: What messages show: the folder, or the `scheme://bucket/prefix` (never a secret).
    url: str
    filesystem: pafs.FileSystem

    @abstractmethod
    def path(self, rel: str = "") -> str:
        """`rel` as pyarrow's `filesystem` names it (for readers: `pq`, `pyarrow.dataset`)."""

    @property
    def local(self) -> Path | None:
        """The folder, for a local store."""
        return None

    @abstractmethod
    def child(self, rel: str) -> DatasetStore:
        """The store rooted at `rel` inside this one (the staging area)."""

    @abstractmethod
    def sibling(self, suffix: str) -> DatasetStore:
        """`<root><suffix>` beside this root: `data/x` → `data/x.comments`."""

    @abstractmethod
    def prepare(self) -> None:
        """Make the root ready to write (a folder created, a bucket checked)."""

    @abstractmethod
    @contextlib.contextmanager
    def writing(self, rel: str) -> Iterator[str]:
        """A local file to write `rel` into; it appears under `rel`, complete, when the block
        ends without error, and never otherwise."""

    def write_bytes(self, rel: str, data: bytes) -> None:
        with self.writing(rel) as tmp:
            Path(tmp).write_bytes(data)

    @abstractmethod
    def read_bytes(self, rel: str) -> bytes | None:
        """The file's bytes, None when there is no such file."""

    @abstractmethod
    def exists(self, rel: str) -> bool: ...

    @abstractmethod
    def files(self, prefix: str = "") -> list[str]:
        """Every file under `prefix` (recursively), relative to the root, sorted."""

    @abstractmethod
    def delete(self, rels: Iterable[str]) -> None:
        """Remove these files; a missing one is fine."""

    @abstractmethod
    def delete_tree(self, rel: str) -> None:
        """Remove everything under `rel`."""

    @abstractmethod
    def open_input(self, rel: str) -> pa.NativeFile:
        """A random-access reader of `rel` (Parquet footers, Arrow IPC segments)."""

    def size(self, rel: str) -> int:
        info = self.filesystem.get_file_info(self.path(rel))
        return int(info.size or 0)

    def sweep(self, known: set[str], keep: Callable[[str], bool] = lambda rel: False) -> list[str]:
        """Remove every file the state does not know (nor `keep` keeps); return them."""
        unknown = [rel for rel in self.files() if rel not in known and not keep(rel)]
        self.delete(unknown)
        return unknown

    def __str__(self) -> str:
        return self.url


class LocalStore(DatasetStore):
    """A folder: write aside, fsync, rename; nothing outside the folder is ever touched."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)
        self.filesystem = pafs.LocalFileSystem()

    def path(self, rel: str = "") -> str:
        return str(self.root / rel) if rel else str(self.root)

    @property
    def local(self) -> Path:
        return self.root

    def child(self, rel: str) -> LocalStore:
        return LocalStore(self.root / rel)

    def sibling(self, suffix: str) -> LocalStore:
        return LocalStore(self.root.with_name(self.root.name + suffix))

    def prepare(self) -> None:
        with sink_errors(f"create {self.root}"):
            self.root.mkdir(parents=True, exist_ok=True)

    @contextlib.contextmanager
    def writing(self, rel: str) -> Iterator[str]:
        final = self.root / rel
        # Hidden, and not ending in `.parquet`: `**/*.parquet` globs see hidden files.
        tmp = final.with_name(f".{final.name}.tmp")
        if not final.parent.is_dir():
            final.parent.mkdir(parents=True, exist_ok=True)
            fsync_dir(final.parent.parent)
        try:
            yield str(tmp)
            publish(tmp, final)
        except BaseException:
            # A full disk must not keep a half-written file (start-up would remove it, but
            # the space is wanted now).
            tmp.unlink(missing_ok=True)
            raise

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            return (self.root / rel).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, rel: str) -> bool:
        return (self.root / rel).exists()

    def files(self, prefix: str = "") -> list[str]:
        top = self.root / prefix if prefix else self.root
        out: list[str] = []
        if not top.is_dir():
            return out
        # Never follows a symlink: a link is listed (and may be removed) as a file.
        for dirpath, dirnames, filenames in os.walk(top, followlinks=False):
            here = Path(dirpath)
            links = [d for d in dirnames if (here / d).is_symlink()]
            for name in filenames + links:
                out.append((here / name).relative_to(self.root).as_posix())
        return sorted(out)

    def delete(self, rels: Iterable[str]) -> None:
        for rel in rels:
            (self.root / rel).unlink(missing_ok=True)

    def delete_tree(self, rel: str) -> None:
        target = self.root / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)

    def open_input(self, rel: str) -> pa.NativeFile:
        # Memory-mapped: staged segments are read back without a copy.
        return pa.memory_map(str(self.root / rel))

    def sweep(self, known: set[str], keep: Callable[[str], bool] = lambda rel: False) -> list[str]:
        removed = super().sweep(known, keep)
        # Folders emptied by the sweep (or by an earlier delete) go too, deepest first.
        if self.root.is_dir():
            for dirpath, _, _ in sorted(
                os.walk(self.root, followlinks=False), key=lambda d: -len(d[0])
            ):
                if Path(dirpath) != self.root:
                    with contextlib.suppress(OSError):  # not empty: fine
                        Path(dirpath).rmdir()
        return removed


class ObjectStore(DatasetStore):
    """A prefix in a bucket, through a pyarrow filesystem (S3, GCS, Azure)."""

    def __init__(self, filesystem: pafs.FileSystem, base: str, url: str) -> None:
        self.filesystem = filesystem
        self.base = base.rstrip("/")
        self.url = url.rstrip("/")

    def path(self, rel: str = "") -> str:
        return f"{self.base}/{rel}" if rel else self.base

    def child(self, rel: str) -> ObjectStore:
        return ObjectStore(self.filesystem, self.path(rel), f"{self.url}/{rel}")

    def sibling(self, suffix: str) -> ObjectStore:
        return ObjectStore(self.filesystem, self.base + suffix, self.url + suffix)

    @property
    def bucket(self) -> str:
        return self.base.split("/", 1)[0]

    def prepare(self) -> None:
        # No folders to create: a key's "folders" exist once it does. The bucket must, and
        # `open_dataset` checked it.
        return None

    @contextlib.contextmanager
    def writing(self, rel: str) -> Iterator[str]:
        spool = tempfile.mkdtemp(prefix="harvester-upload-")
        tmp = str(Path(spool) / "object")
        try:
            yield tmp
            # One PUT (or a multipart upload completed at its close): the key shows the whole
            # object or nothing; a crash before here leaves nothing in the bucket.
            with sink_errors(f"upload {self.url}/{rel}"):
                pafs.copy_files(
                    tmp,
                    self.path(rel),
                    source_filesystem=pafs.LocalFileSystem(),
                    destination_filesystem=self.filesystem,
                )
        finally:
            shutil.rmtree(spool, ignore_errors=True)

    def write_bytes(self, rel: str, data: bytes) -> None:
        # Whole in memory: the stream's close sends it in one PUT.
        with (
            sink_errors(f"upload {self.url}/{rel}"),
            self.filesystem.open_output_stream(self.path(rel)) as out,
        ):
            out.write(data)

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            with self.filesystem.open_input_stream(self.path(rel)) as f:
                return bytes(f.read())
        except FileNotFoundError:
            return None

    def exists(self, rel: str) -> bool:
        return bool(self.filesystem.get_file_info(self.path(rel)).type == pafs.FileType.File)

    def files(self, prefix: str = "") -> list[str]:
        top = self.path(prefix) if prefix else self.base
        selector = pafs.FileSelector(top, recursive=True, allow_not_found=True)
        cut = len(self.base) + 1
        # Directory markers (zero-byte `folder/` keys some tools write) are not files.
        return sorted(
            info.path[cut:]
            for info in self.filesystem.get_file_info(selector)
            if info.type == pafs.FileType.File
        )

    def delete(self, rels: Iterable[str]) -> None:
        for rel in rels:
            with contextlib.suppress(FileNotFoundError):
                self.filesystem.delete_file(self.path(rel))

    def delete_tree(self, rel: str) -> None:
        self.filesystem.delete_dir_contents(self.path(rel), missing_dir_ok=True)
        with contextlib.suppress(FileNotFoundError, OSError):
            self.filesystem.delete_dir(self.path(rel))

    def open_input(self, rel: str) -> pa.NativeFile:
        return self.filesystem.open_input_file(self.path(rel))


def as_store(root: DatasetStore | Path | str) -> DatasetStore:
    """A store for `root`: stores pass through, paths become local stores, URLs are opened."""
    if isinstance(root, DatasetStore):
        return root
    return open_dataset(str(root)) if is_url(str(root)) else LocalStore(Path(root))


def open_dataset(location: str) -> DatasetStore:
    """The store at `location`: a folder (nothing checked), or an object-store URL whose
    bucket is checked to exist and answer (ConfigError in one line otherwise)."""
    if not is_url(location):
        return LocalStore(Path(location))
    try:
        url = check_dataset_url(location)
    except ValueError as e:
        raise ConfigError(f"output.path: {e}") from None
    scheme, _, rest = url.partition("://")
    if scheme == "s3":
        store = ObjectStore(_s3(rest.split("/", 1)[0]), rest, url)
    else:
        try:
            fs, base = pafs.FileSystem.from_uri(url)
        except (pa.ArrowException, OSError, ValueError) as e:
            raise ConfigError(f"output.path: cannot open {url}: {_first_line(e)}") from None
        store = ObjectStore(fs, base, url)
    check_bucket(store)
    return store


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _s3(bucket: str) -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem with the endpoint and region of the AWS environment."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    options: dict[str, object] = {"connect_timeout": 10.0, "request_timeout": 120.0}
    if endpoint:
        parts = urlsplit(endpoint if "://" in endpoint else f"https://{endpoint}")
        options["endpoint_override"] = parts.netloc
        options["scheme"] = parts.scheme or "https"
        # S3-compatible servers answer any region; the SDK needs one to sign with.
        region = region or "us-east-1"
    if not _credentials_configured():
        raise ConfigError(
            f"output.path: no AWS credentials found for s3://{bucket}; {_CREDENTIAL_HELP}"
        )
    if region is None:
        try:
            region = pafs.resolve_s3_region(bucket)
        except (OSError, pa.ArrowException) as e:
            raise _s3_problem(f"s3://{bucket}", e) from None
    return pafs.S3FileSystem(region=region, **options)


def _credentials_configured() -> bool:
    """Whether the AWS SDK's chain has anywhere to look: with none of its sources, and the
    instance metadata service switched off, a request would go out unsigned."""
    env = os.environ
    if env.get("AWS_ACCESS_KEY_ID") or env.get("AWS_PROFILE") or env.get("AWS_DEFAULT_PROFILE"):
        return True
    if any(
        env.get(k)
        for k in (
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        )
    ):
        return True
    home = Path.home() / ".aws"
    files = [
        Path(env.get("AWS_SHARED_CREDENTIALS_FILE") or home / "credentials"),
        Path(env.get("AWS_CONFIG_FILE") or home / "config"),
    ]
    if any(f.is_file() for f in files):
        return True
    # On a cloud machine the role comes from the metadata service; only when it is switched
    # off do we know there is nothing.
    return env.get("AWS_EC2_METADATA_DISABLED", "").lower() != "true"


def _s3_problem(url: str, e: BaseException) -> ConfigError:
    """One line for what went wrong reaching `url`, and what to do about it."""
    text = str(e)
    if "NETWORK_CONNECTION" in text or "curlCode" in text or "resolve" in text.lower():
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        where = f"the endpoint {endpoint}" if endpoint else "S3"
        return ConfigError(
            f"output.path: cannot reach {where} for {url}; check the network, or "
            "AWS_ENDPOINT_URL for an S3-compatible server"
        )
    if "ACCESS_DENIED" in text or "AccessDenied" in text or "403" in text or "credential" in text:
        return ConfigError(
            f"output.path: access to {url} denied; check the credentials "
            f"({_CREDENTIAL_HELP}) and that they may read and write the bucket"
        )
    return ConfigError(f"output.path: cannot use {url}: {_first_line(e)}")


def check_bucket(store: ObjectStore) -> None:
    """Refuse, in one line, a bucket that does not exist or cannot be reached."""
    try:
        info = store.filesystem.get_file_info(store.bucket)
    except (OSError, pa.ArrowException) as e:
        raise _s3_problem(store.url, e) from None
    if info.type == pafs.FileType.NotFound:
        scheme = store.url.partition("://")[0]
        create = f"aws s3 mb s3://{store.bucket}" if scheme == "s3" else "in its console"
        raise ConfigError(
            f"output.path: the bucket {store.bucket!r} of {store.url} does not exist; "
            f"create it ({create}) or fix output.path"
        )
    try:
        store.files("_harvester-probe")  # a listing needs read access to the prefix
    except (OSError, pa.ArrowException) as e:
        raise _s3_problem(store.url, e) from None
