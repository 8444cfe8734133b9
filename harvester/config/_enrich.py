"""`[[enrich]]` blocks: what each fetches about which harvested videos, and where its dataset
goes (beside the videos' dataset, never inside or over it)."""

from __future__ import annotations

from pathlib import Path

from harvester.config._places import creatable, path
from harvester.config._schema import EnrichTable, Problem, StudyFile
from harvester.config._study import Enrichment
from harvester.kinds import KINDS

#: The video field each kind's targets are read from.
_TARGET_FIELD = {"comments": "id", "playlists": "playlist_id"}


def enrichments(
    model: StudyFile, base: Path, output: Path, state: Path, fields: tuple[str, ...]
) -> tuple[Enrichment, ...]:
    out: list[Enrichment] = []
    seen: dict[Path, int] = {}
    for i, e in enumerate(model.enrich):
        key = f"enrich[{i}]"
        _check_block(model, key, e, fields)
        dataset = _dataset(key, e, base, output, state)
        if dataset in seen:
            raise Problem(
                f"{key}.path",
                f"{dataset} is also enrich[{seen[dataset]}]'s dataset",
                "give each enrichment its own path",
            )
        seen[dataset] = i
        creatable(f"{key}.path", dataset, folder=True)
        out.append(Enrichment(e.kind, e.where, e.max_per_target, e.replies, dataset))
    return tuple(out)


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
