"""`[[enrich]]` blocks: what each fetches about which harvested videos, and where its dataset
goes (beside the videos' dataset, never inside or over it)."""

from __future__ import annotations

from pathlib import Path

from harvester._location import sibling_url
from harvester.config._places import creatable, dataset_url, path
from harvester.config._schema import EnrichTable, Problem, StudyFile
from harvester.config._study import Enrichment
from harvester.kinds import KINDS

#: The video field each kind's targets are read from.
_TARGET_FIELD = {"comments": "id", "playlists": "playlist_id"}


def enrichments(
    model: StudyFile,
    base: Path,
    output: Path,
    state: Path,
    fields: tuple[str, ...],
    output_url: str | None = None,
) -> tuple[Enrichment, ...]:
    out: list[Enrichment] = []
    seen: dict[str, int] = {}
    for i, e in enumerate(model.enrich):
        key = f"enrich[{i}]"
        _check_block(model, key, e, fields)
        url = _dataset_url(key, e, output_url)
        if url is None and output_url is not None and model.state.url is not None:
            # Workers sharing the study stage a block's pages under its dataset's `_staging/`
            # prefix when it is in a bucket; a folder's go beside the video folder, which is
            # not one here.
            raise Problem(
                f"{key}.path",
                "an enrichment dataset in a folder beside videos in a bucket has no staging "
                "area every worker sharing the PostgreSQL state reaches",
                "leave enrich.path out (the dataset goes beside the videos in the bucket) or "
                "give it an s3:// URL",
            )
        dataset = (
            output.with_name(f"{output.name}.{e.kind}")
            if url is not None
            else _dataset(key, e, base, output, state)
        )
        where = url or str(dataset)
        if where in seen:
            raise Problem(
                f"{key}.path",
                f"{where} is also enrich[{seen[where]}]'s dataset",
                "give each enrichment its own path",
            )
        seen[where] = i
        if url is None:
            creatable(f"{key}.path", dataset, folder=True)
        out.append(Enrichment(e.kind, e.where, e.max_per_target, e.replies, dataset, url))
    return tuple(out)


def _dataset_url(key: str, e: EnrichTable, output_url: str | None) -> str | None:
    """The block's dataset in a bucket: as given, or `<prefix>.<kind>` beside the videos' when
    they are in one; None for a folder."""
    url = dataset_url(f"{key}.path", e.path)
    if url is None and e.path is None and output_url is not None:
        url = sibling_url(output_url, f".{e.kind}")
    if (
        url is not None
        and output_url is not None
        and (
            url == output_url
            or url.startswith(output_url + "/")
            or output_url.startswith(url + "/")
        )
    ):
        raise Problem(
            f"{key}.path", f"{url} overlaps output.path", "give each dataset its own prefix"
        )
    return url


def _check_block(model: StudyFile, key: str, e: EnrichTable, fields: tuple[str, ...]) -> None:
    if model.study.source == "pyrqs" and KINDS[e.kind].category is None:
        # A pyrqs study has no public API address: its enrichments are VCE category tasks.
        raise Problem(
            f"{key}.kind",
            f"{e.kind} has no VCE category, and a pyrqs study enriches through the VCE's "
            "categories only",
            f'enrich {e.kind} from a study with source = "research-api" over the same videos',
        )
    needed = _TARGET_FIELD.get(e.kind, "username")
    if needed not in fields:
        raise Problem(
            f"{key}.kind", f"{e.kind} needs the videos' {needed}", f"add {needed!r} to study.fields"
        )
    if e.replies and e.kind != "comments":
        raise Problem(f"{key}.replies", "applies to comments only", "remove it")
    if e.where is not None and not e.where.strip():
        raise Problem(f"{key}.where", "is empty", "remove it or write SQL like comment_count >= 5")


def _dataset(key: str, e: EnrichTable, base: Path, output: Path, state: Path) -> Path:
    """The block's dataset folder: as given, or `<output>.<kind>` beside the videos'."""
    dataset = (
        path(base, f"{key}.path", e.path)
        if e.path is not None
        else output.with_name(f"{output.name}.{e.kind}")
    )
    if dataset == output or dataset.is_relative_to(output) or output.is_relative_to(dataset):
        raise Problem(
            f"{key}.path", f"{dataset} overlaps output.path", "give each dataset its own folder"
        )
    if state.is_relative_to(dataset):
        raise Problem(f"{key}.path", f"{dataset} holds the state", "choose another folder")
    return dataset
